// eddy's dashboard in Debian's chromium, driven by playwright-core (run by tests/dashboard.rs):
//   node dashboard.js URL SCREENSHOT_DIR SOURCE VIEW
// Loads the page, waits for the source and the view to show, checks that the source's rows read
// go up while data flows, opens the view's operator graph, writes two screenshots, and prints a
// JSON summary: {first, second, graph, counters, sparkline, errors}. Exits 1 on console errors, 2 on any failure.
"use strict";
const { chromium } = require("playwright-core");

const [url, shots, source, view] = process.argv.slice(2);
const WAIT = { timeout: 30000 };

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(url);
    const sourceRow = `#sources tr[data-name="${source}"]`;
    const viewRow = `#views tr[data-name="${view}"]`;
    await page.waitForSelector(sourceRow, WAIT);
    await page.waitForSelector(viewRow, WAIT);
    const rowsRead = `${sourceRow} .rows-read`;
    const read = () => page.$eval(rowsRead, (e) => Number(e.textContent.replace(/,/g, "")));
    const first = await read();
    await page.screenshot({ path: `${shots}/dashboard-1.png`, fullPage: true });
    // Live: the number moves without a reload.
    await page.waitForFunction(([sel, v]) =>
      Number(document.querySelector(sel).textContent.replace(/,/g, "")) > v, [rowsRead, first], WAIT);
    const second = await read();
    await page.click(`${viewRow} button`);
    await page.waitForSelector(".graph svg text", WAIT);
    // The operator's counters come with the next status.
    await page.waitForSelector(".graph svg text.counters", WAIT);
    const graph = await page.$$eval(".graph svg text:not(.counters)", (ts) => ts.map((t) => t.textContent));
    const counters = await page.$$eval(".graph svg text.counters", (ts) => ts.map((t) => t.textContent));
    const sparkline = await page.$eval(`${sourceRow} svg.spark polyline`, (p) => p.getAttribute("points"));
    await page.screenshot({ path: `${shots}/dashboard-2.png`, fullPage: true });
    console.log(JSON.stringify({ first, second, graph, counters, sparkline, errors }));
    process.exitCode = errors.length ? 1 : 0;
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(String(e && e.stack || e));
  process.exit(2);
});
