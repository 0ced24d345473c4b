// sosq console: live tables by server-sent events, select-all, copy buttons.
// Served from /assets/console.js (the Content-Security-Policy allows no inline script).
// Everything inserted below was rendered and escaped by the server.
"use strict";

function live(element, eventName, target) {
  const url = element.dataset.live;
  if (!url || !window.EventSource) return;
  const state = document.getElementById("live-state");
  const source = new EventSource(url);
  source.addEventListener(eventName, (event) => {
    // Someone working by keyboard keeps its place: the link or control that had the focus
    // inside the table gets it back in the new rows (same href, else same id).
    const focused = target.contains(document.activeElement) ? document.activeElement : null;
    const href = focused && focused.getAttribute("href");
    const id = focused && focused.id;
    target.innerHTML = event.data;
    if (focused) {
      const again = Array.from(target.querySelectorAll("[href], [id]")).find((e) =>
        href ? e.getAttribute("href") === href : id && e.id === id);
      if (again) again.focus();
    }
    if (state) state.textContent = "Live: this table updates by itself.";
  });
  const counts = document.getElementById("queue-counts");
  source.addEventListener("counts", (event) => {
    if (counts && event.data) counts.innerHTML = event.data;
  });
  source.addEventListener("signedout", () => {
    source.close();
    window.location.assign("/signin");
  });
  source.onerror = () => {
    if (state) state.textContent = "Live updates paused; reconnecting…";
  };
}

document.addEventListener("DOMContentLoaded", () => {
  const queue = document.getElementById("queue");
  if (queue) live(queue, "queue", document.getElementById("queue-rows"));
  const follow = document.getElementById("follow");
  if (follow) live(follow, "case", follow);

  const selectPage = document.getElementById("select-page");
  if (selectPage) {
    selectPage.addEventListener("change", () => {
      for (const box of document.querySelectorAll('input[type=checkbox][name=code]')) {
        box.checked = selectPage.checked;
      }
    });
  }

  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", () => {
      const source = document.getElementById(button.dataset.copy);
      if (source && navigator.clipboard) {
        navigator.clipboard.writeText(source.textContent.trim());
        button.textContent = "Copied";
      }
    });
  }
});
