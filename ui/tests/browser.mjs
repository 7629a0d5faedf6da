// Drives the web UI in Debian's Chromium against a real `forgeai serve` (started, with the
// mock model, by crates/cli/tests/browser.rs). Saves a screenshot of each page to ARTIFACTS.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import assert from 'node:assert/strict';

const { FORGEAI_URL, LOGIN_URL, ARTIFACTS } = process.env;
assert.ok(FORGEAI_URL && LOGIN_URL && ARTIFACTS, 'FORGEAI_URL, LOGIN_URL and ARTIFACTS must be set');
mkdirSync(ARTIFACTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-quic'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
const outside = [];
page.on('request', (request) => {
  const host = new URL(request.url()).hostname;
  if (host !== '127.0.0.1' && host !== 'localhost' && !host.endsWith('.localhost')) outside.push(request.url());
});
const shot = (name) => page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
/** Retries `check` (which throws until it holds) for up to `ms`. */
async function eventually(check, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}
const step = (name) => console.log(`browser: ${name}`);

try {
  step('sign in through the one-time login URL');
  await page.goto(LOGIN_URL);
  await page.getByTestId('prompt-input').waitFor();
  await shot('1-home');

  step('submit a prompt from the home page');
  await page.getByTestId('prompt-input').fill('Build a hello page');
  await page.getByTestId('prompt-submit').click();
  await page.waitForURL(/\/projects\/[0-9a-f-]+$/);

  step('watch the statuses appear');
  const status = page.getByTestId('run-status');
  await status.waitFor();
  await page.waitForFunction(
    () => document.querySelector('[data-testid="run-status"]')?.textContent?.includes('Demo is ready'),
    null, { timeout: 60_000 });
  await page.locator('[data-testid="message"][data-role="ASSISTANT"]').first().waitFor();
  await shot('2-project');

  step('the activity log shows what the agent did, and the run ended by its typed event');
  await page.locator('[data-testid="activity-tool"]').filter({ hasText: 'Wrote index.html' }).waitFor();
  await page.locator('[data-testid="activity-end"][data-outcome="completed"]').waitFor();
  await shot('2b-activity');

  step('see the preview iframe show the agent\'s page');
  const preview = page.frameLocator('[data-testid="preview-frame"]');
  await preview.locator('h1').filter({ hasText: 'Hello from forgeai' }).waitFor({ timeout: 30_000 });

  step('the iframe opened the private preview through a grant, traded for a cookie, on the clean URL');
  const src = await page.getByTestId('preview-frame').getAttribute('src');
  assert.match(src, /^http:\/\/3000-[a-z0-9]+\.localhost:\d+\/\?forgeai_grant=[\w.-]+$/, src);
  const previewUrl = src.split('?')[0];
  const previewFrame = page.frames().find((f) => f.url().startsWith(previewUrl));
  assert.ok(previewFrame, `a frame on ${previewUrl}: ${page.frames().map((f) => f.url())}`);
  assert.equal(previewFrame.url(), previewUrl, 'the grant left the address');

  step('another browser is refused the private preview');
  const stranger = await browser.newContext();
  const strangerPage = await stranger.newPage();
  const refused = await strangerPage.goto(previewUrl);
  assert.equal(refused.status(), 401);
  assert.match(await strangerPage.content(), /This preview is private/);

  step('shared from the preview bar, anyone can open it; unshared, no one else');
  await page.getByTestId('preview-public').check();
  await eventually(async () => {
    const shared = await strangerPage.goto(previewUrl);
    assert.equal(shared.status(), 200);
  });
  assert.match(await strangerPage.content(), /Hello from forgeai/);
  await page.getByTestId('preview-public').uncheck();
  await eventually(async () => {
    const unshared = await strangerPage.goto(previewUrl);
    assert.equal(unshared.status(), 401);
  });
  await stranger.close();

  step('open the code tab and see the file');
  await page.getByTestId('tab-code').click();
  await page.locator('[data-testid="file-item"][data-path="index.html"]').click();
  const editor = page.getByTestId('code-editor');
  await assert.doesNotReject(editor.waitFor());
  assert.match(await editor.textContent(), /Hello from forgeai/);
  assert.ok(await page.locator('.cm-lineNumbers').isVisible(), 'CodeMirror shows line numbers');
  await shot('3-code');

  step('edit the file in CodeMirror (undo and redo work), save, and see the preview change');
  await editor.click();
  await page.keyboard.press('Control+a');
  await page.keyboard.insertText('<h1>Edited in the browser</h1>');
  assert.match(await editor.textContent(), /Edited in the browser/);
  await page.keyboard.press('Control+z');
  await eventually(async () => assert.match(await editor.textContent(), /Hello from forgeai/));
  await page.keyboard.press('Control+y');
  await eventually(async () => assert.match(await editor.textContent(), /Edited in the browser/));
  await page.keyboard.press('Control+f');
  await page.locator('.cm-search').waitFor();
  await page.keyboard.press('Escape');
  await page.getByTestId('code-save').click();
  await page.getByTestId('tab-preview').click();
  await preview.locator('h1').filter({ hasText: 'Edited in the browser' }).waitFor({ timeout: 30_000 });
  await shot('4-edited');

  step('send a follow-up prompt');
  await page.getByTestId('prompt-input').fill('Add an about page');
  await page.getByTestId('prompt-submit').click();
  await page.waitForFunction(
    () => document.querySelectorAll('[data-testid="message"][data-role="ASSISTANT"]').length >= 2,
    null, { timeout: 60_000 });
  await page.locator('[data-testid="message"]').filter({ hasText: 'Added an about page' }).waitFor();
  await shot('5-follow-up');

  step('open the versions, view a diff, restore the first version');
  await page.getByTestId('tab-versions').click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="version"]').length >= 3, null, { timeout: 30_000 });
  await page.locator('[data-testid="version"][data-number="3"] [data-testid="version-diff"]').click();
  const diffView = page.getByTestId('version-diff-view');
  await diffView.waitFor();
  assert.match(await diffView.textContent(), /\+<p>About<\/p>/);
  await shot('5b-versions-diff');
  await page.locator('[data-testid="version"][data-number="1"] [data-testid="version-restore"]').click();
  await page.locator('[data-testid="version"][data-number="4"]').waitFor({ timeout: 30_000 });
  await page.getByTestId('tab-preview').click();
  await preview.locator('h1').filter({ hasText: 'Hello from forgeai' }).waitFor({ timeout: 30_000 });
  await shot('5c-restored');

  step('stop a run while its command runs; the next prompt could run');
  await page.getByTestId('prompt-input').fill('Do a long task');
  await page.getByTestId('prompt-submit').click();
  const stop = page.getByTestId('stop-run');
  await stop.waitFor({ timeout: 60_000 });
  await shot('6-running');
  await stop.click();
  await page.locator('[data-testid="activity-end"][data-outcome="cancelled"]').waitFor({ timeout: 30_000 });
  await page.locator('[data-testid="message"]').filter({ hasText: 'Stopped.' }).waitFor({ timeout: 30_000 });
  await shot('7-stopped');

  step('download the project as a zip');
  const href = await page.getByTestId('download-zip').getAttribute('href');
  const zip = await page.request.get(new URL(href, FORGEAI_URL).toString());
  assert.equal(zip.status(), 200);
  assert.equal(zip.headers()['content-type'], 'application/zip');
  const body = await zip.body();
  assert.equal(body.subarray(0, 2).toString(), 'PK', 'a zip archive');

  step('phone width: the panes stack');
  await page.setViewportSize({ width: 375, height: 800 });
  const chat = await page.getByTestId('messages').boundingBox();
  const frame = await page.getByTestId('preview-frame').boundingBox();
  assert.ok(chat && frame, 'chat and preview are visible');
  assert.ok(frame.y >= chat.y + chat.height - 1, `preview (y=${frame.y}) is below the chat (y=${chat.y}, h=${chat.height})`);
  assert.ok(chat.width <= 375 && frame.width <= 375, 'nothing wider than the phone');
  await shot('6-phone-project');
  await page.goto(FORGEAI_URL);
  await page.getByTestId('project-item').first().waitFor();
  await shot('7-phone-home');

  step("the tokens page lists this browser's session; signing out revokes it on the server");
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.getByTestId('nav-tokens').click();
  await page.getByTestId('tokens-table').waitFor();
  const current = page.locator('[data-testid="token-row"][data-current="true"]');
  assert.equal(await current.getAttribute('data-kind'), 'session');
  assert.ok((await page.locator('[data-testid="token-row"][data-kind="api"]').count()) >= 1, 'the API token is listed');
  await shot('8-tokens');
  const session = (await context.cookies(FORGEAI_URL)).find((c) => c.name === 'forgeai_session');
  assert.ok(session && session.httpOnly, 'an HttpOnly session cookie');
  const days = (session.expires - Date.now() / 1000) / 86400;
  assert.ok(days > 29 && days <= 30, `the session cookie expires in 30 days, not ${days}`);
  await page.getByTestId('sign-out').click();
  await page.getByTestId('signin-form').waitFor();
  const replayed = await fetch(`${FORGEAI_URL}/api/projects`, { headers: { cookie: `forgeai_session=${session.value}` } });
  assert.equal(replayed.status, 401, 'the signed-out session is refused even if its cookie was kept');
  await shot('9-signed-out');

  assert.deepEqual(outside, [], 'the pages loaded nothing from outside this machine');
  console.log('browser: 1 passed, 0 failed');
} catch (error) {
  await shot('failure').catch(() => {});
  console.error(error);
  process.exitCode = 1;
} finally {
  await browser.close();
}
