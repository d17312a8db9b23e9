#!/usr/bin/env node
// Opens the page in headless Chromium, waits for both panels to finish, saves a screenshot and
// prints the page's results as one JSON line.
//
//   node drive.mjs URL --screenshot OUT.png [--chromium /usr/bin/chromium] [--timeout 60]
//
// puppeteer-core never downloads a browser: it drives the Chromium given here (Debian's).

import { parseArgs } from 'node:util';

import puppeteer from 'puppeteer-core';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    screenshot: { type: 'string' },
    chromium: { type: 'string', default: process.env.CHROMIUM ?? '/usr/bin/chromium' },
    timeout: { type: 'string', default: '60' },
  },
});
if (positionals.length !== 1 || !values.screenshot) {
  console.error('usage: node drive.mjs URL --screenshot OUT.png [--chromium PATH] [--timeout SECONDS]');
  process.exit(2);
}
const [url] = positionals;
const timeout = Number(values.timeout) * 1000;

const browser = await puppeteer.launch({
  executablePath: values.chromium,
  headless: true,
  args: [
    // Chromium's sandbox refuses to start as root (CI runs as root).
    '--no-sandbox',
    // Keep Chromium's own background requests (updates, safe browsing...) off the network:
    // every host but the local server resolves to nothing.
    '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
    '--disable-gpu',
  ],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1120, height: 700 }); // both panels side by side
  const console_ = [];
  page.on('console', (message) => console_.push(`${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => console_.push(`pageerror: ${error.message}`));
  const started = performance.now();
  await page.goto(url, { waitUntil: 'load', timeout });
  await page.waitForFunction(() => window.cartpoleResult && window.gridResult, { timeout, polling: 100 });
  const results = await page.evaluate(() => ({ cartpole: window.cartpoleResult, grid: window.gridResult }));
  await page.screenshot({ path: values.screenshot, fullPage: true });
  const seconds = (performance.now() - started) / 1000;
  console.log(JSON.stringify({ ...results, screenshot: values.screenshot, seconds, console: console_ }));
} finally {
  await browser.close();
}
