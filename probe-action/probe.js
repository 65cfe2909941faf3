#!/usr/bin/env node
// Keep-alive probe: opens the hosted app in a headless browser, as a visitor would, so that the host
// counts the visit as traffic; clicks the host's wake-up button when the app was put to sleep; exits
// 0 once the app has rendered, or non-zero with a one-line reason on stderr.
//
//   PROBE_URL=https://carburoam.example node probe.js
//
// PROBE_URL            the app's address (required)
// PROBE_TIMEOUT_MS     how long the whole visit may take (default 90000: a sleeping app takes a minute to boot)
// PROBE_TEXT           a text the app's first page shows (default: the welcome page's first sentence)
// PUPPETEER_EXECUTABLE_PATH or CHROME_PATH   the browser (default /usr/bin/chromium)
"use strict";

const puppeteer = require("puppeteer-core");

const DEFAULT_TIMEOUT_MS = 90_000;
const DEFAULT_TEXT = "Stop overpaying at the pump"; // pages/welcome.py
const WAKE_UP = "Yes, get this app back up!"; // the host's button on a sleeping app's page
const APP_ERROR = '[data-testid="stException"], [data-testid="stAlertContentError"]'; // st.exception, st.error
const BROWSER_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

class ProbeFailure extends Error {}

function config(env) {
  const url = env.PROBE_URL;
  if (!url) throw new ProbeFailure("PROBE_URL is not set: give the address of the app to probe");
  const timeoutMs = Number(env.PROBE_TIMEOUT_MS || DEFAULT_TIMEOUT_MS);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    throw new ProbeFailure(`PROBE_TIMEOUT_MS must be a positive number of milliseconds, not "${env.PROBE_TIMEOUT_MS}"`);
  }
  return {
    url,
    timeoutMs,
    text: env.PROBE_TEXT || DEFAULT_TEXT,
    browser: env.PUPPETEER_EXECUTABLE_PATH || env.CHROME_PATH || "/usr/bin/chromium",
  };
}

function textSelector(text) {
  return `::-p-text(${JSON.stringify(text)})`;
}

// The first of `targets` ({name: selector}) visible in any frame of the page, frames added later
// included: the host shows the app, and may show its wake-up button, inside an iframe.
async function firstShown(page, targets, timeoutMs, timeoutReason) {
  const abort = new AbortController();
  let timer, watch;
  try {
    return await new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new ProbeFailure(timeoutReason)), timeoutMs);
      watch = (frame) => {
        for (const [name, selector] of Object.entries(targets)) {
          frame
            .waitForSelector(selector, { visible: true, timeout: 0, signal: abort.signal })
            .then((element) => element && resolve({ name, element }))
            .catch(() => {}); // a frame that went away, or a wait aborted once another target showed
        }
      };
      page.frames().forEach(watch);
      page.on("frameattached", watch);
    });
  } finally {
    clearTimeout(timer);
    page.off("frameattached", watch);
    abort.abort();
  }
}

async function probe({ url, timeoutMs, text, browser: executablePath }) {
  const deadline = Date.now() + timeoutMs;
  const left = () => Math.max(deadline - Date.now(), 1);
  let browser;
  try {
    browser = await puppeteer.launch({ executablePath, args: BROWSER_ARGS, headless: true, timeout: left() });
  } catch (error) {
    throw new ProbeFailure(`cannot start the browser ${executablePath}: ${error.message}`);
  }
  try {
    const page = await browser.newPage();
    let response;
    try {
      response = await page.goto(url, { waitUntil: "domcontentloaded", timeout: left() });
    } catch (error) {
      throw new ProbeFailure(`cannot open the page: ${error.message}`);
    }
    if (response && !response.ok()) {
      throw new ProbeFailure(`${url} answered HTTP ${response.status()} ${response.statusText()}`.trim());
    }
    const app = { app: textSelector(text), error: APP_ERROR };
    const late = `timed out after ${timeoutMs / 1000} s waiting for "${text}"`;
    let shown = await firstShown(page, { ...app, wakeUp: textSelector(WAKE_UP) }, left(), late);
    if (shown.name === "wakeUp") {
      await shown.element.click();
      console.log(`probe: clicked "${WAKE_UP}"`);
      shown = await firstShown(page, app, left(), `${late} after clicking "${WAKE_UP}"`);
    }
    if (shown.name === "error") {
      const message = await shown.element.evaluate((element) => element.innerText);
      throw new ProbeFailure(`the app shows an error: ${message}`);
    }
    console.log(`probe: ${url} shows "${text}"`);
  } finally {
    await browser.close();
  }
}

function oneLine(message) {
  return message.split("\n").map((line) => line.trim()).filter(Boolean).join(" ").slice(0, 500);
}

async function main() {
  try {
    await probe(config(process.env));
  } catch (error) {
    const reason = error instanceof ProbeFailure ? error.message : `${error.name}: ${error.message}`;
    console.error(`probe: ${oneLine(reason)}`);
    process.exitCode = 1;
  }
}

main();
