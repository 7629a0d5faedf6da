// Opens the preview of a replayed agent transcript in Debian's Chromium (driven by
// crates/cli/tests/transcripts.rs) and checks what a person would: the expected text is
// visible, no Next.js error overlay and no uncaught error, and the transcript's interaction
// works. With `appErrors`, it checks the project page of the web UI says the app has errors.
//
// Environment: NAME, EXPECT (the transcript's `expect` object as JSON), ARTIFACTS (where the
// screenshot goes), and PREVIEW_URL (a preview link with its grant) or, for `appErrors`,
// LOGIN_URL and PROJECT_PATH. Prints one line `RESULT {json}` with the timings.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import assert from 'node:assert/strict';

const { NAME, EXPECT, ARTIFACTS, PREVIEW_URL, LOGIN_URL, PROJECT_PATH } = process.env;
assert.ok(NAME && EXPECT && ARTIFACTS, 'NAME, EXPECT and ARTIFACTS must be set');
const expect = JSON.parse(EXPECT);
mkdirSync(ARTIFACTS, { recursive: true });

/** How long one expected text or interaction may take (a route compiles on first use). */
const STEP_TIMEOUT = 60_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
const uncaught = [];
page.on('pageerror', (error) => uncaught.push(error.message));
const shot = () => page.screenshot({ path: `${ARTIFACTS}/${NAME}.png`, fullPage: true });
const result = { name: NAME };

/** Next.js shows build and runtime errors in its dev overlay (in an open shadow root). */
async function assertNoErrorOverlay(when) {
  const overlay = page.locator('[data-nextjs-dialog], [data-nextjs-dialog-overlay], [data-nextjs-error-overlay-nav]');
  const count = await overlay.count();
  const body = (await page.locator('body').innerText().catch(() => '')) ?? '';
  const marker = ['Unhandled Runtime Error', 'Failed to compile', 'Build Error', 'Module not found']
    .find((text) => body.includes(text));
  assert.equal(count, 0, `${when}: the Next.js error overlay is open`);
  assert.equal(marker, undefined, `${when}: the page shows "${marker}"`);
  assert.deepEqual(uncaught, [], `${when}: uncaught errors in the page`);
}

/** Roles of what a person clicks, looked for by accessible name before plain text. */
const CLICKABLE_ROLES = ['button', 'link', 'tab', 'menuitem', 'menuitemcheckbox', 'menuitemradio', 'option',
  'combobox', 'checkbox', 'switch', 'radio', 'treeitem'];

/** The element a person would click for `name`: a control of that name, else that text. */
async function clickable(name) {
  const byRole = CLICKABLE_ROLES
    .map((role) => page.getByRole(role, { name, exact: true }))
    .reduce((all, locator) => all.or(locator));
  const byText = page.getByText(name, { exact: true });
  await byRole.or(byText).first().waitFor({ timeout: STEP_TIMEOUT });
  return (await byRole.count()) > 0 ? byRole.first() : byText.first();
}

function field(name) {
  return page.getByLabel(name, { exact: true }).or(page.getByPlaceholder(name, { exact: true })).first();
}

async function interact(step) {
  if (step.click !== undefined) {
    await (await clickable(step.click)).click({ timeout: STEP_TIMEOUT });
  } else if (step.fill !== undefined) {
    await field(step.fill.field).fill(String(step.fill.value), { timeout: STEP_TIMEOUT });
  } else if (step.expectText !== undefined) {
    await page.getByText(step.expectText).first().waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
  } else {
    throw new Error(`unknown interaction step ${JSON.stringify(step)}`);
  }
}

try {
  if (expect.appErrors !== undefined) {
    assert.ok(LOGIN_URL && PROJECT_PATH, 'LOGIN_URL and PROJECT_PATH must be set for appErrors');
    await page.goto(LOGIN_URL);
    const base = new URL(LOGIN_URL).origin;
    await page.getByTestId('prompt-input').waitFor({ timeout: STEP_TIMEOUT });
    await page.goto(`${base}${PROJECT_PATH}`);
    const box = page.getByTestId('app-errors');
    await box.waitFor({ timeout: STEP_TIMEOUT });
    const text = await box.innerText();
    assert.ok(text.includes('The app has errors'), `the UI does not say the app has errors: ${text}`);
    assert.ok(text.includes(expect.appErrors), `the UI does not show "${expect.appErrors}": ${text}`);
    await shot();
  } else {
    assert.ok(PREVIEW_URL, 'PREVIEW_URL must be set');
    // The grant link sets the preview cookie and opens `/`; another path is opened after it.
    const started = Date.now();
    await page.goto(PREVIEW_URL, { waitUntil: 'load', timeout: STEP_TIMEOUT });
    const path = expect.path ?? '/';
    if (path !== '/') {
      await page.goto(new URL(path, PREVIEW_URL).toString(), { waitUntil: 'load', timeout: STEP_TIMEOUT });
    }
    for (const text of expect.text ?? []) {
      await page.getByText(text).first().waitFor({ state: 'visible', timeout: STEP_TIMEOUT });
    }
    result.firstLoadMs = Date.now() - started;
    await assertNoErrorOverlay('after loading');
    const interactionStarted = Date.now();
    for (const step of expect.interaction ?? []) {
      await interact(step);
    }
    result.interactionMs = Date.now() - interactionStarted;
    await page.waitForTimeout(300);
    await assertNoErrorOverlay('after the interaction');
    await shot();
  }
  console.log(`RESULT ${JSON.stringify(result)}`);
} catch (error) {
  await shot().catch(() => {});
  console.error(`transcript ${NAME}: ${error.stack ?? error}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
