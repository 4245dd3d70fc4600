// The console's side of `cargo bench --bench console`: signs in on the flags
// page and records when each flag's row appears (a MutationObserver, the
// page's own clock, which is the machine's). Reads lines `KEY T0_MS` on stdin
// (T0: just before the write was sent) and answers `{"key", "ms"}` once the
// row is on the page.
//
//   SERVER, TOKEN, CHROMIUM as for driver.mjs.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const { SERVER, TOKEN } = process.env;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
const page = await browser.newPage();
await page.goto(`${SERVER.replace(/\/+$/, '')}/ui/`);
await page.getByLabel('Token').fill(TOKEN);
await page.getByRole('button', { name: 'Sign in' }).click();
await page.getByRole('heading', { level: 1, name: 'Flags' }).waitFor();
await page.evaluate(() => {
  window.__seen = {};
  new MutationObserver(() => {
    for (const a of document.querySelectorAll('main table a')) {
      window.__seen[a.textContent] ??= Date.now();
    }
  }).observe(document.getElementById('main'), { childList: true, subtree: true });
});
process.stdout.write('{"ready":true}\n');
for await (const line of createInterface({ input: process.stdin })) {
  const [key, t0] = line.trim().split(' ');
  if (!key) continue;
  const seen = await page.waitForFunction((k) => window.__seen[k], key, { timeout: 10_000, polling: 5 });
  process.stdout.write(`${JSON.stringify({ key, ms: (await seen.jsonValue()) - Number(t0) })}\n`);
}
await browser.close();
