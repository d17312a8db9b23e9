#!/usr/bin/env node
// Opens a page in headless Chromium, waits for its results, saves a screenshot and prints the
// results as one JSON line.
//
//   node drive.mjs URL --screenshot OUT.png [--wait cartpoleResult,gridResult]
//                      [--chromium /usr/bin/chromium] [--timeout 60]
//
// --wait names the `window` properties the page sets when it is done (index.html: both panels'
// cartpoleResult and gridResult, the default; check.html: checkResult). Each is printed.
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
    wait: { type: 'string', default: 'cartpoleResult,gridResult' },
  },
});
if (positionals.length !== 1 || !values.screenshot) {
  console.error(
    'usage: node drive.mjs URL --screenshot OUT.png [--wait NAME,...] [--chromium PATH] [--timeout SECONDS]',
  );
  process.exit(2);
}
const [url] = positionals;
const timeout = Number(values.timeout) * 1000;
const names = values.wait.split(',');

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
  await page.waitForFunction((wanted) => wanted.every((name) => window[name] !== undefined), { timeout, polling: 100 }, names);
  // Printed without the "Result" suffix: {"cartpole": ..., "grid": ...} or {"check": ...}.
  const results = await page.evaluate(
    (wanted) => Object.fromEntries(wanted.map((name) => [name.replace(/Result$/, ''), window[name]])),
    names,
  );
  await page.screenshot({ path: values.screenshot, fullPage: true });
  const seconds = (performance.now() - started) / 1000;
  console.log(JSON.stringify({ ...results, screenshot: values.screenshot, seconds, console: console_ }));
} finally {
  await browser.close();
}
