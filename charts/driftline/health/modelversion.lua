-- Argo CD health check for driftline.dev/ModelVersion: a version's phase.
local hs = { status = "Progressing", message = "Waiting for the driftline operator" }
if obj.status == nil or obj.status.phase == nil then
  return hs
end
local phase = obj.status.phase
local message = obj.status.message or phase
if phase == "Champion" or phase == "Superseded" then
  return { status = "Healthy", message = message }
end
if phase == "Rejected" or phase == "RolledBack" or phase == "Failed" then
  return { status = "Degraded", message = message }
end
return { status = "Progressing", message = message }
