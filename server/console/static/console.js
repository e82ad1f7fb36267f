// vmapp console: the replication matrix follows the version's replication
// through server-sent events (the console's /replication stream of
// WatchReplication), without reloading the page.
"use strict";
(function () {
  const box = document.getElementById("matrix");
  if (!box || !box.dataset.watch || !window.EventSource) {
    return;
  }
  const live = document.getElementById("live");
  const aggregate = document.getElementById("aggregate");
  const facts = document.getElementById("facts");
  const es = new EventSource(box.dataset.watch);
  es.addEventListener("status", function (e) {
    const s = JSON.parse(e.data);
    box.innerHTML = s.html;
    facts.innerHTML = s.facts;
    const badge = document.createElement("span");
    badge.className = "state state-" + s.state.toLowerCase();
    badge.textContent = s.state;
    aggregate.replaceChildren(badge);
    box.dataset.state = s.state;
  });
  es.addEventListener("done", function () {
    es.close();
    live.textContent = "Replication finished: every region is Completed or Failed.";
    box.dataset.done = "1";
  });
  es.addEventListener("problem", function (e) {
    es.close();
    const p = JSON.parse(e.data);
    live.textContent = p.Heading + ": " + p.Message + " Reload the page to try again.";
    live.className = "error";
  });
})();

// A rollout's page follows the rollout through server-sent events (the
// console's /watch stream of WatchRollout), and counts its soak down.
(function () {
  const box = document.getElementById("rollout");
  if (!box || !box.dataset.watch || !window.EventSource) {
    return;
  }
  const live = document.getElementById("live");
  const es = new EventSource(box.dataset.watch);
  es.addEventListener("rollout", function (e) {
    const s = JSON.parse(e.data);
    box.innerHTML = s.html;
    box.dataset.state = s.state;
    tick();
  });
  es.addEventListener("done", function () {
    es.close();
    live.textContent = "The rollout has ended: it moves no more machines.";
    box.dataset.done = "1";
  });
  es.addEventListener("problem", function (e) {
    es.close();
    const p = JSON.parse(e.data);
    live.textContent = p.Heading + ": " + p.Message + " Reload the page to try again.";
    live.className = "error";
  });
  function tick() {
    box.querySelectorAll(".countdown").forEach(function (c) {
      const left = Math.max(0, Math.round((Number(c.dataset.end) - Date.now()) / 1000));
      const h = Math.floor(left / 3600), m = Math.floor(left / 60) % 60, s = left % 60;
      c.textContent = (h ? h + "h" : "") + (h || m ? m + "m" : "") + s + "s";
    });
  }
  setInterval(tick, 1000);
})();
