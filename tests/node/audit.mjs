// Lighthouse's accessibility, best-practices and SEO audits of pages of a running server, in one
// Chromium (the system's: CHROME_PATH). Prints one JSON line per page: its scores, and the audits
// that scored below 1. Used by tests/dashboard/test_lighthouse.py; nothing is fetched from outside.
//
//   node audit.mjs BASE_URL COOKIE PATH...     (COOKIE "" for none; it goes only to the server)
import * as chromeLauncher from "chrome-launcher";
import lighthouse from "lighthouse";

const [base, cookie, ...paths] = process.argv.slice(2);
const chrome = await chromeLauncher.launch({
  chromePath: process.env.CHROME_PATH,
  chromeFlags: ["--headless=new", "--no-sandbox", "--disable-gpu"],
});
try {
  for (const path of paths) {
    const flags = {
      port: chrome.port,
      output: "json",
      logLevel: "error",
      onlyCategories: ["accessibility", "best-practices", "seo"],
      extraHeaders: cookie ? { Cookie: cookie } : undefined,
    };
    let result;
    // Lighthouse sometimes fails to record a page load (NO_NAVSTART): that page is audited again.
    for (let attempt = 0; attempt < 3; attempt++) {
      result = await lighthouse(base + path, flags);
      if (!result.lhr.runtimeError) break;
    }
    const { lhr } = result;
    const failing = Object.values(lhr.audits)
      .filter((a) => a.score !== null && a.score < 1 && ["binary", "numeric"].includes(a.scoreDisplayMode))
      .map((a) => a.id);
    const scores = Object.fromEntries(Object.entries(lhr.categories).map(([k, v]) => [k, v.score]));
    console.log(JSON.stringify({ path, url: lhr.finalDisplayedUrl, error: lhr.runtimeError?.code ?? null, scores, failing }));
  }
} finally {
  await chrome.kill();
}
