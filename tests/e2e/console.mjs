// The console in a real browser: playwright-core driving Debian's chromium headless, axe-core
// for accessibility. Run by tests/e2e/test_console.py against a whole stack it started, with
// the scenario's facts in the environment; exits non-zero at the first failed check.
//
//   auditor: logs in (identity's authorization-code flow, the development login page), finds
//   the emergency access by patient, exports the view as CSV, records a review, sees gaps,
//   signals and the chain's status;
//   citizen (Norwegian Bokmål): sees a new access appear in the access log, registers a block
//   and withdraws another, then switches to English.
//
// Every page is checked with axe (WCAG 2.1 A/AA rules: no serious or critical violation) and
// for Content-Security-Policy violations (none), and kept as a screenshot in ARTIFACTS.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const CONSOLE = env("CONSOLE_URL");
const ARTIFACTS = env("ARTIFACTS");
const TIMEOUT = 20_000;
fs.mkdirSync(ARTIFACTS, { recursive: true });

const checks = [];
function check(condition, what) {
  if (!condition) throw new Error(`FAILED: ${what}`);
  checks.push(what);
  console.log(`ok ${checks.length} - ${what}`);
}

const violations = []; // CSP violations and page errors, from every page
function watch(page, who) {
  page.on("console", (message) => {
    if (message.type() === "error") violations.push(`${who}: console: ${message.text()}`);
  });
  page.on("pageerror", (error) => violations.push(`${who}: page error: ${error.message}`));
}

async function audit(page, name) {
  // CSP: evaluate is the browser's own (DevTools) and needs no script-src for axe
  await page.evaluate(axeSource);
  const results = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
    }),
  );
  const serious = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of serious) {
    console.log(`axe ${name}: ${v.id} (${v.impact}): ${v.help}: ${v.nodes.map((n) => n.target).join(" ")}`);
  }
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  fs.writeFileSync(path.join(ARTIFACTS, `${name}.axe.json`), JSON.stringify(results.violations, null, 2));
  check(serious.length === 0, `${name}: axe finds no serious violation (${results.passes.length} rules pass)`);
}

async function logIn(page, who, identifier) {
  await page.goto(`${CONSOLE}/`);
  await page.getByRole("link", { name: /log in|logg inn/i }).click();
  // identity's /authorize sent the browser to the development login page
  await page.waitForURL(/\/login\?/, { timeout: TIMEOUT });
  await page.getByLabel("Log in as").selectOption(who);
  await page.getByLabel("HPR number or national id").fill(identifier);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(new RegExp(`^${CONSOLE}/(auditor|citizen)/`), { timeout: TIMEOUT });
}

async function cookieOf(context) {
  const cookies = await context.cookies(CONSOLE);
  return cookies.find((c) => c.name === "__Host-akson-console");
}

async function auditorScenario(browser) {
  const context = await browser.newContext({ acceptDownloads: true, locale: "en-GB" });
  const page = await context.newPage();
  watch(page, "auditor");
  await page.goto(`${CONSOLE}/`);
  await audit(page, "01-front-page");
  await logIn(page, "personnel", env("AUDITOR_HPR"));
  check(page.url().startsWith(`${CONSOLE}/auditor/search`), "the auditor lands on the search");
  const cookie = await cookieOf(context);
  check(cookie && cookie.httpOnly && cookie.secure && cookie.sameSite === "Lax",
    "the session cookie is HttpOnly, Secure and SameSite=Lax");

  // a bad value is the console's 400 with the reason, swapped in like any answer
  await page.getByLabel("Patient (national id)").fill("123");
  await page.getByRole("button", { name: "Search" }).click();
  await page.getByRole("alert").filter({ hasText: "11-digit national id" }).waitFor({ timeout: TIMEOUT });
  check(true, "a bad patient id is refused with the reason (400, shown in place)");

  // search by patient, emergency accesses only (htmx swaps the results in)
  await page.getByLabel("Patient (national id)").fill(env("PATIENT"));
  await page.getByLabel("Emergency accesses only").check();
  await page.getByRole("button", { name: "Search" }).click();
  const emergency = page.locator(`li.decision[data-decision="${env("EMERGENCY_DECISION")}"]`);
  await emergency.waitFor({ timeout: TIMEOUT });
  await page.waitForURL(new RegExp(`patient=${env("PATIENT")}`), { timeout: TIMEOUT });
  check(true, "the search is in the address (htmx pushes it)");
  const text = await emergency.innerText();
  check(/Emergency access/.test(text) && /emergency/.test(text), "the decision is shown as an emergency access, basis 'emergency'");
  check(text.includes(env("EMERGENCY_REASON")), "with its emergency reason");
  check(/Policy version\s+\d+\.\d+\.\d+/.test(text), "and the policy version");
  check(await page.locator("svg.chart rect").count() >= 3, "the per-day chart is drawn");
  await audit(page, "02-auditor-search");

  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "Export this view as CSV" }).click(),
  ]);
  const csv = fs.readFileSync(await download.path(), "utf8");
  fs.writeFileSync(path.join(ARTIFACTS, "02-auditor-export.csv"), csv);
  check(csv.split("\n")[0].startsWith("position,decision_id"), "the CSV export has audit's columns");
  check(csv.includes(env("EMERGENCY_DECISION")), "and the emergency decision");

  // the review queue: keyboard to the nav link, then the form
  await page.getByRole("link", { name: "Reviews" }).focus();
  await page.keyboard.press("Enter");
  await page.waitForURL(`${CONSOLE}/auditor/reviews`);
  const review = page.locator(`section.review[data-decision="${env("EMERGENCY_DECISION")}"]`);
  await review.waitFor({ timeout: TIMEOUT });
  await audit(page, "03-auditor-reviews");
  await review.getByLabel("Not justified").check();
  await review.getByLabel("Comment").fill("No emergency in the clinic's log at that hour.");
  await review.getByRole("button", { name: "Record the verdict" }).click();
  await page.getByRole("status").filter({ hasText: "The verdict is recorded." }).waitFor({ timeout: TIMEOUT });
  check(await page.locator(`section.review[data-decision="${env("EMERGENCY_DECISION")}"]`).count() === 0,
    "the reviewed access has left the queue");
  const reviewId = await page.evaluate(() => document.querySelector("tbody tr[data-review]")?.dataset.review);
  check(Boolean(reviewId), "and is listed as reviewed");
  await audit(page, "04-auditor-reviewed");

  await page.getByRole("link", { name: "Gaps and signals" }).click();
  await page.getByRole("heading", { name: "Snooping signals", exact: true }).waitFor();
  await audit(page, "05-auditor-findings");
  await page.getByRole("link", { name: "Chain" }).click();
  await page.getByRole("status").waitFor();
  check((await page.getByRole("status").innerText()).includes("The chain is intact."), "the chain verifies intact");
  await audit(page, "06-auditor-chain");

  // a citizen's page is not the auditor's
  const refused = await page.goto(`${CONSOLE}/citizen/access-log`);
  check(refused.status() === 403, "the auditor gets no citizen page (403)");
  await page.goto(`${CONSOLE}/auditor/search`);
  await page.getByRole("button", { name: "Log out" }).click();
  await page.waitForURL(`${CONSOLE}/`);
  const after = await page.goto(`${CONSOLE}/auditor/search`);
  check(after.url().includes("/login") || after.url().includes("/authorize"), "after logging out, a page asks for a login again");
  await context.close();
  return reviewId;
}

async function citizenScenario(browser) {
  const context = await browser.newContext({ locale: "nb-NO" });
  const page = await context.newPage();
  watch(page, "citizen");
  await logIn(page, "citizen", env("PATIENT"));
  check(page.url().startsWith(`${CONSOLE}/citizen/access-log`), "the citizen lands on the access log");
  await page.getByRole("heading", { name: "Hvem har sett i journalen min" }).waitFor();
  check(await page.locator("html").getAttribute("lang") === "nb", "the page is in Norwegian Bokmål (lang=nb)");
  const rows = page.locator("table.access-log tbody tr");
  const before = await rows.count();
  check(await page.locator("table.access-log tbody tr.emergency", { hasText: "nødrett" }).count() === 1,
    "the emergency access is in her log, marked as one");
  check(!(await page.locator("table.access-log").innerText()).includes("kontroll av en nødtilgang"),
    "the auditor's review of it is not an access to her record");
  await audit(page, "07-citizen-access-log");

  // keyboard: the first Tab reaches the skip link, which moves to the content
  await page.keyboard.press("Tab");
  check(await page.evaluate(() => document.activeElement?.textContent?.trim()) === "Gå til innholdet",
    "the first Tab stop is the skip link");

  // the GP reads the record now; the citizen refreshes until the access appears
  const read = await fetch(env("READ_URL"), { headers: { authorization: `Bearer ${env("GP_TOKEN")}` } });
  check(read.status === 200, "the GP reads the citizen's document (200)");
  const deadline = Date.now() + 30_000;
  while ((await rows.count()) <= before && Date.now() < deadline) {
    await page.getByRole("link", { name: "Oppdater" }).click();
    await page.waitForTimeout(1000);
  }
  check((await rows.count()) > before, `the new access appears (${before} -> ${await rows.count()} rows)`);
  const newest = await rows.first().innerText();
  check(/lege/.test(newest) && /behandlingsrelasjon/.test(newest) && /Nei/.test(newest),
    "newest first: a doctor, on a care relation, not an emergency");
  check(!/Kontroll hos fastlege/.test(await page.content()), "no clinical content on the page");
  await audit(page, "08-citizen-new-access");

  await page.getByRole("link", { name: "Sperringer og samtykker" }).click();
  await page.getByRole("heading", { name: "Mine sperringer og samtykker" }).waitFor();
  await audit(page, "09-citizen-directives");

  // register a block of a health worker through the form
  await page.getByLabel("En helsearbeider (HPR-nummer)").check();
  await page.getByLabel("Nummer", { exact: true }).fill(env("NEW_BLOCK_HPR"));
  await page.getByRole("button", { name: "Registrer sperringen" }).click();
  await page.getByRole("status").filter({ hasText: "Sperringen er registrert." }).waitFor({ timeout: TIMEOUT });
  check(await page.locator("tr[data-status=active]", { hasText: env("NEW_BLOCK_HPR") }).count() === 1,
    "the new block is listed as active");

  // withdraw the block made before the test
  const existing = page.locator(`tr[data-directive="${env("BLOCK_ID")}"]`);
  await existing.getByRole("button", { name: /Trekk tilbake sperringen/ }).click();
  await page.getByRole("status").filter({ hasText: "Sperringen er trukket tilbake." }).waitFor({ timeout: TIMEOUT });
  check(await page.locator(`tr[data-directive="${env("BLOCK_ID")}"]`).getAttribute("data-status") === "withdrawn",
    "the withdrawn block is listed as withdrawn");
  await audit(page, "10-citizen-block-withdrawn");

  await page.getByRole("link", { name: "English" }).click();
  await page.getByRole("heading", { name: "My blocks and consents" }).waitFor();
  check(await page.locator("html").getAttribute("lang") === "en", "English on request (lang=en)");
  await audit(page, "11-citizen-directives-english");

  // a form without the session's CSRF token is refused
  const forged = await page.evaluate(async (id) => {
    const answer = await fetch(`/citizen/directives/${id}/withdraw`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "csrf=forged",
    });
    return answer.status;
  }, env("BLOCK_ID"));
  check(forged === 403, "a form with a forged CSRF token is refused (403)");
  const auditorPage = await page.goto(`${CONSOLE}/auditor/search`);
  check(auditorPage.status() === 403, "the citizen gets no auditor page (403)");
  await context.close();
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  args: ["--no-sandbox"],
});
let failed = false;
try {
  const started = Date.now();
  const reviewId = await auditorScenario(browser);
  await citizenScenario(browser);
  const csp = violations.filter((v) => /Content Security Policy/i.test(v));
  for (const v of violations) console.log(`browser: ${v}`);
  check(csp.length === 0, "no Content-Security-Policy violation on any page");
  console.log(JSON.stringify({ review: reviewId, checks: checks.length, seconds: (Date.now() - started) / 1000 }));
} catch (error) {
  failed = true;
  console.log(String(error && error.stack ? error.stack : error));
} finally {
  await browser.close();
}
console.log(`${checks.length} passed, ${failed ? 1 : 0} failed`);
process.exit(failed ? 1 : 0);
