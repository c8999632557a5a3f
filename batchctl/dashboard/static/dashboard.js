// batchctl dashboard: live updates over Server-Sent Events, the cancel dialog, and relative
// times. Vanilla, no dependencies, nothing inline (the CSP allows scripts from 'self' only).
// Everything works without it except live updates and the cancel dialog.
"use strict";

(function () {
  document.documentElement.classList.add("js");

  // --- Live updates: the server sends {elementId: innerHTML} for the page's live regions.

  const body = document.body;
  const state = document.getElementById("live-state");

  function setState(name, text) {
    if (state) {
      state.dataset.state = name;
      state.textContent = text;
    }
  }

  if (body.dataset.live && "EventSource" in window) {
    const source = new EventSource(body.dataset.live);
    source.addEventListener("open", function () {
      setState("open", "live");
    });
    source.addEventListener("error", function () {
      // EventSource reconnects by itself unless the server refused the stream outright.
      if (source.readyState === EventSource.CLOSED) {
        setState("closed", "offline: reload the page");
      } else {
        setState("retry", "reconnecting…");
      }
    });
    source.addEventListener("update", function (event) {
      let regions;
      try {
        regions = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      for (const id of Object.keys(regions)) {
        const element = document.getElementById(id);
        // Only the regions the page marked: an update never touches anything else.
        if (element && element.hasAttribute("data-live-region")) {
          element.innerHTML = regions[id];
        }
      }
    });
    source.addEventListener("gone", function () {
      // The batch is no longer visible to this viewer: stop instead of retrying forever.
      source.close();
      setState("closed", "no longer live");
    });
    window.addEventListener("pagehide", function () {
      source.close();
    });
  }

  // --- Dialogs, by delegation: the buttons sit in live regions that updates replace.

  document.addEventListener("click", function (event) {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) {
      return;
    }
    const opener = target.closest("[data-open-dialog]");
    if (opener) {
      const dialog = document.getElementById(opener.getAttribute("data-open-dialog"));
      if (dialog && typeof dialog.showModal === "function" && !dialog.open) {
        dialog.showModal();
        const first = dialog.querySelector("textarea, input:not([type=hidden])");
        if (first) {
          first.focus();
        }
      }
      return;
    }
    const closer = target.closest("[data-close-dialog]");
    if (closer) {
      const dialog = closer.closest("dialog");
      if (dialog) {
        dialog.close();
      }
    }
  });

  // --- Filters submit on change (the Filter button is there for pages without this script).

  document.addEventListener("change", function (event) {
    const target = event.target;
    if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit") && target.form) {
      target.form.requestSubmit();
    }
  });

  // --- Relative times: the same words as pages.relative(), against the server's clock.

  const serverNow = Date.parse(body.dataset.now || "");
  const skew = isNaN(serverNow) ? 0 : serverNow - Date.now();

  function relative(then, now) {
    const seconds = (now - then) / 1000;
    if (seconds < 60) {
      return "just now";
    }
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) {
      return minutes + " min ago";
    }
    const hours = Math.floor(minutes / 60);
    if (hours < 24) {
      return hours + " h ago";
    }
    const days = Math.floor(hours / 24);
    return days === 1 ? "1 day ago" : days + " days ago";
  }

  function refreshTimes() {
    const now = Date.now() + skew;
    for (const element of document.querySelectorAll("time[data-relative]")) {
      const then = Date.parse(element.getAttribute("datetime") || "");
      if (!isNaN(then)) {
        const text = relative(then, now);
        if (element.textContent !== text) {
          element.textContent = text;
        }
      }
    }
  }

  window.setInterval(refreshTimes, 30000);
})();
