// vmapp console: live parts of pages follow vmappd through server-sent
// events (the console's streams of the watch RPCs), without reloading the
// page: a version's replication matrix (/replication, WatchReplication) and
// a rollout (/watch, WatchRollout), whose soak also counts down.
"use strict";
(function () {
  // follow opens box's stream (data-watch), hands each event named name
  // to update, and says in #live when it ends or fails.
  function follow(box, name, update, doneText) {
    const live = document.getElementById("live");
    const es = new EventSource(box.dataset.watch);
    es.addEventListener(name, function (e) {
      update(JSON.parse(e.data));
    });
    es.addEventListener("done", function () {
      es.close();
      live.textContent = doneText;
      box.dataset.done = "1";
    });
    es.addEventListener("problem", function (e) {
      es.close();
      const p = JSON.parse(e.data);
      live.textContent = p.Heading + ": " + p.Message + " Reload the page to try again.";
      live.className = "error";
    });
  }

  function matrix(box) {
    const aggregate = document.getElementById("aggregate");
    const facts = document.getElementById("facts");
    follow(box, "status", function (s) {
      box.innerHTML = s.html;
      facts.innerHTML = s.facts;
      const badge = document.createElement("span");
      badge.className = "state state-" + s.state.toLowerCase();
      badge.textContent = s.state;
      aggregate.replaceChildren(badge);
      box.dataset.state = s.state;
    }, "Replication finished: every region is Completed or Failed.");
  }

  function rollout(box) {
    function tick() {
      box.querySelectorAll(".countdown").forEach(function (c) {
        const left = Math.max(0, Math.round((Number(c.dataset.end) - Date.now()) / 1000));
        const h = Math.floor(left / 3600), m = Math.floor(left / 60) % 60, s = left % 60;
        c.textContent = (h ? h + "h" : "") + (h || m ? m + "m" : "") + s + "s";
      });
    }
    follow(box, "rollout", function (r) {
      box.innerHTML = r.html;
      box.dataset.state = r.state;
      tick();
    }, "The rollout has ended: it moves no more machines.");
    setInterval(tick, 1000);
  }

  if (!window.EventSource) {
    return;
  }
  const m = document.getElementById("matrix");
  if (m && m.dataset.watch) {
    matrix(m);
  }
  const r = document.getElementById("rollout");
  if (r && r.dataset.watch) {
    rollout(r);
  }
})();
