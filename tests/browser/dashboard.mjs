// Opens a driftline dashboard in headless Chromium and checks what a user
// sees: the Models list, a Model page (rollback, drifted features, audit
// rows) and a version page (gate report). Saves a screenshot of each.
//
// node dashboard.mjs BASE_URL NAMESPACE/MODEL SCREENSHOT_DIR
// Environment: CHROMIUM (default /usr/bin/chromium).
// Prints one JSON line of what it saw; exits 1 with the reason on failure.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, model, shots] = process.argv.slice(2);
if (!base || !model || !shots) {
  console.error("usage: node dashboard.mjs BASE_URL NAMESPACE/MODEL SCREENSHOT_DIR");
  process.exit(2);
}
const [namespace, name] = model.split("/");
mkdirSync(shots, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // Debian's chromium in a container runs as root: no user namespace sandbox.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  // Nothing may be fetched from elsewhere: the dashboard works offline.
  const foreign = [];
  page.on("request", (r) => {
    if (!r.url().startsWith(base)) foreign.push(r.url());
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  // Models list.
  const list = await page.goto(`${base}/`);
  check(list.ok(), `GET / answered ${list.status()}`);
  const row = page.locator("#models tr", { hasText: `${namespace}/${name}` });
  check((await row.count()) === 1, `no row for ${model} in the Models list`);
  seen.listRow = (await row.innerText()).replace(/\s+/g, " ").trim();
  await page.screenshot({ path: join(shots, "models.png"), fullPage: true });

  // Model page, reached by the list's link.
  await row.locator("a").first().click();
  await page.waitForSelector("#audit");
  check(
    page.url().endsWith(`/models/${namespace}/${name}`),
    `the Model link led to ${page.url()}`,
  );
  const rollbacks = page.locator('#audit tr[data-action="Rollback"]');
  check((await rollbacks.count()) >= 1, "no Rollback row in the audit trail");
  seen.rollback = (await rollbacks.first().innerText()).replace(/\s+/g, " ").trim();
  seen.auditRows = await page.locator("#audit tr[data-action]").count();
  check(seen.auditRows >= 3, `only ${seen.auditRows} audit rows`);
  seen.driftedFeatures = (await page.locator("#drifted-features").innerText()).trim();
  check(
    seen.driftedFeatures !== "" && seen.driftedFeatures !== "none",
    "no drifted features shown",
  );
  seen.heatmap = await page.locator("#heatmap path").count();
  check(seen.heatmap > 0, "the drift heatmap has no cells");
  const timeline = (await page.locator("#traffic-steps").innerText()).trim();
  check(timeline.includes("Rollback"), `the traffic timeline lacks the rollback: ${timeline}`);
  seen.versionRows = await page.locator("#versions tr").count() - 1;
  await page.screenshot({ path: join(shots, "model.png"), fullPage: true });

  // Another feature's histogram, chosen in the page's form.
  const options = await page.locator('select[name="feature"] option').allTextContents();
  seen.features = options.length;
  if (options.length > 1) {
    const other = options.find((o) => !seen.driftedFeatures.startsWith(o)) || options[1];
    await Promise.all([
      page.waitForURL(/feature=/),
      page.selectOption('select[name="feature"]', other),
    ]);
    const selected = await page.locator('select[name="feature"]').inputValue();
    check(selected === other, `asked for ${other}, the page shows ${selected}`);
    seen.histogramFeature = selected;
    await page.screenshot({ path: join(shots, "model-histogram.png"), fullPage: true });
  }

  // A version page: its whole gate report.
  await page.goto(`${base}/models/${namespace}/${name}`);
  await page.locator("#versions a", { hasText: "v2" }).first().click();
  await page.waitForSelector("#lineage");
  seen.gateChecks = await page.locator("#gate tr").count() - 1;
  check(seen.gateChecks > 0, "the version page lists no gate checks");
  seen.gateVerdict = (await page.locator("#gate-verdict").innerText()).trim();
  await page.screenshot({ path: join(shots, "version.png"), fullPage: true });

  // The JSON twin answers the same facts.
  const json = await (await page.request.get(`${base}/models/${namespace}/${name}?format=json`)).json();
  check(json.audit.some((a) => a.action === "Rollback"), "the JSON twin lacks the rollback");

  check(foreign.length === 0, `requests outside the dashboard: ${foreign.join(", ")}`);
  check(errors.length === 0, `page errors: ${errors.join("; ")}`);
  console.log(JSON.stringify(seen));
} catch (e) {
  console.error(`dashboard check failed: ${e.message}\nseen so far: ${JSON.stringify(seen)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
