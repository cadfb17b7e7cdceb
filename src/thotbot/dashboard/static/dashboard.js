// Progressive enhancement only: every page works without this file.
"use strict";

(() => {
  // Copy buttons: shown only when scripts run; without them the key is selected with one click.
  for (const button of document.querySelectorAll("[data-copy-target]")) {
    const target = document.getElementById(button.dataset.copyTarget);
    const status = document.getElementById(button.dataset.copyStatus || "");
    if (!target) continue;
    const say = (text) => { if (status) status.textContent = text; };
    const select = () => {
      const range = document.createRange();
      range.selectNodeContents(target);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    };
    button.hidden = false;
    button.addEventListener("click", async () => {
      const text = target.textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
        say("Copied to the clipboard.");
      } catch {
        select();
        const copied = document.execCommand && document.execCommand("copy");
        say(copied ? "Copied to the clipboard." : "The key is selected: press Ctrl+C (⌘C on a Mac) to copy it.");
      }
    });
  }

  // A page that showed a secret forgets it when left, so no back/forward cache can bring it back.
  window.addEventListener("pagehide", () => {
    for (const element of document.querySelectorAll("[data-secret]")) {
      element.textContent = "(hidden: a key is shown only once)";
    }
  });
})();
