// Drives the courtbox front panel in Debian's Chromium, headless, like a secretary would.
// Usage: node drive.mjs <base url> <screenshot folder>. Prints one JSON line of findings;
// tests/integration/panel.rs checks them against the session and audit chains.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [base, out] = process.argv.slice(2);
mkdirSync(out, { recursive: true });
const found = {};
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});
try {
  const page = await (await browser.newContext({ viewport: { width: 1024, height: 900 } })).newPage();
  const shot = (name) => page.screenshot({ path: `${out}/${name}.png`, fullPage: true });
  const text = (sel) => page.locator(sel).innerText();
  const pressPin = async (pin) => {
    for (const d of pin) await page.click(`#keypad button[data-key="${d}"]`);
    await page.click("#pin-ok");
  };

  await page.goto(base);
  await page.click('#languages button[data-lang="en"]');
  await page.waitForSelector('#names button[data-name="Aigerim"]');
  await shot("01-sign-in");

  // Wrong PINs for Dana until her account locks.
  await page.click('#names button[data-name="Dana"]');
  await pressPin("0000");
  await page.waitForFunction(() => /Wrong PIN/.test(document.querySelector("#sign-in-message").textContent));
  found.wrong_pin_message = await text("#sign-in-message");
  await pressPin("1111");
  await page.waitForFunction(() => /Tries left before lock-out: 1/.test(document.querySelector("#sign-in-message").textContent));
  await pressPin("2222");
  await page.waitForFunction(() => /Locked/.test(document.querySelector("#sign-in-message").textContent));
  await pressPin("975310");
  await page.waitForFunction(() => /Locked/.test(document.querySelector("#sign-in-message").textContent));
  found.locked_message = await text("#sign-in-message");
  found.console_hidden_while_locked = await page.locator("#console").isHidden();
  await shot("02-locked-out");

  // Aigerim signs in.
  await page.click('#names button[data-name="Aigerim"]');
  await pressPin("482193");
  await page.waitForSelector("#console:not([hidden])");
  await page.waitForFunction(() => document.querySelector("#state").dataset.state === "stopped");
  found.signed_in_as = await text("#who");
  await shot("03-stopped");

  // The interface speaks Kazakh and Russian.
  await page.click('#languages button[data-lang="kk"]');
  found.kk_state = await text("#state");
  found.kk_start = await text("#start");
  await shot("04-kazakh");
  await page.click('#languages button[data-lang="ru"]');
  found.ru_state = await text("#state");
  await page.click('#languages button[data-lang="en"]');

  // Start a hearing.
  await page.fill('#start-form input[name="case"]', "2-345/2026");
  await page.fill('#start-form input[name="title"]', "Panel drill");
  await page.selectOption('#start-form select[name="language"]', "en");
  await page.selectOption('#start-form select[name="hearing"]', "open");
  await page.click("#start");
  await page.waitForFunction(() => document.querySelector("#state").dataset.state === "recording", null, { timeout: 20000 });
  found.recording_text = await text("#state");
  found.start_form_hidden_while_recording = await page.locator("#start-form").isHidden();
  found.banner_colour = await page.locator("#state-banner").evaluate((e) => getComputedStyle(e).backgroundColor);
  const t1 = await text("#timer");
  await page.waitForTimeout(3000);
  found.timer = [t1, await text("#timer")];
  // Levels move and the thumbnails appear.
  const levels = async () => page.$$eval("#meters .meter", (rows) => rows.map((r) => [r.querySelector(".label").textContent, Number(r.dataset.level)]));
  found.levels = [await levels()];
  await page.waitForTimeout(1500);
  found.levels.push(await levels());
  await page.waitForFunction(() => [...document.querySelectorAll("#thumbs img")].every((i) => i.dataset.loaded === "true" && i.naturalWidth > 0), null, { timeout: 15000 });
  found.thumbnails = await page.$$eval("#thumbs img", (imgs) => imgs.map((i) => [i.naturalWidth, i.naturalHeight]));
  // A network camera's link line under its thumbnail (the box's own cameras have none).
  await page.waitForFunction(() => [...document.querySelectorAll("#thumbs .link")].some((l) => /Mbit\/s/.test(l.textContent)), null, { timeout: 15000 }).catch(() => {});
  found.thumbnail_links = await page.$$eval("#thumbs figure", (figs) => figs.map((f) => [f.dataset.source, (f.querySelector(".link") || {}).textContent || null]));
  await shot("05-recording");

  // A mark, then privacy mute on.
  await page.fill("#mark-text", "Witness sworn in");
  await page.click("#mark");
  await page.waitForFunction(() => /Mark added/.test(document.querySelector("#action-message").textContent));
  await page.click("#mute");
  await page.waitForSelector("#muted-badge:not([hidden])", { timeout: 5000 });
  found.muted_badge = await text("#muted-badge");
  await shot("06-privacy-muted");
  await page.click("#mute");
  await page.waitForSelector("#muted-badge[hidden]", { state: "attached", timeout: 5000 });

  // The hearing is closed to the public from the panel (this box has no broadcast output,
  // so no broadcast button is offered).
  found.broadcast_button_hidden = await page.$eval("#broadcast", (b) => b.hidden);
  found.close_hearing_text = await text("#hearing-toggle");
  await page.click("#hearing-toggle");
  await page.waitForFunction(() => /closed hearing/.test(document.querySelector("#hearing-line").textContent));
  found.hearing_line = await text("#hearing-line");
  found.open_hearing_text = await text("#hearing-toggle");

  // Stop asks first; cancelling keeps recording.
  await page.click("#stop");
  await page.waitForSelector("#confirm-stop[open]");
  found.confirm_text = await text("#confirm-stop p");
  await shot("07-confirm-stop");
  await page.click("#confirm-stop-no");
  await page.waitForTimeout(1200);
  found.still_recording_after_cancel = (await page.locator("#state").getAttribute("data-state")) === "recording";
  await page.click("#stop");
  await page.click("#confirm-stop-yes");
  await page.waitForFunction(() => document.querySelector("#state").dataset.state === "stopped", null, { timeout: 30000 });
  found.stopped_text = await text("#state");
  await shot("08-stopped-and-sealed");
} catch (e) {
  found.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(found));
