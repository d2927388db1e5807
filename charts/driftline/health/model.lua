-- Argo CD health check for driftline.dev/Model (resource.customizations.
-- health.driftline.dev_Model in argocd-cm; see the README). It reads only
-- the kstatus conditions the operator writes (Stalled, Reconciling), Paused,
-- Ready and Progressing, so Argo CD and kstatus tell the same story.
local hs = { status = "Progressing", message = "Waiting for the driftline operator" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil
    and (obj.status.observedGeneration == nil
         or obj.status.observedGeneration < obj.metadata.generation) then
  hs.message = "Waiting for the operator to act on generation " .. obj.metadata.generation
  return hs
end
local c = {}
for _, cond in ipairs(obj.status.conditions) do
  c[cond.type] = cond
end
local function holds(t)
  return c[t] ~= nil and c[t].status == "True"
end
if holds("Stalled") then
  return { status = "Degraded", message = c["Stalled"].message }
end
if holds("Paused") then
  return { status = "Suspended", message = c["Paused"].message }
end
if holds("Reconciling") then
  if c["Reconciling"].reason == "AwaitingPromotion" then
    return { status = "Suspended", message = c["Reconciling"].message }
  end
  return { status = "Progressing", message = c["Reconciling"].message }
end
if c["Progressing"] ~= nil and c["Progressing"].reason == "RolledBack" then
  return { status = "Degraded", message = c["Progressing"].message }
end
if holds("Ready") then
  return { status = "Healthy", message = c["Ready"].message }
end
if c["Ready"] ~= nil then
  return { status = "Degraded", message = c["Ready"].message }
end
return hs
