// Live progress without reloading the page. Every element with
// data-progress-url polls that small JSON endpoint while its job is open:
// the job page updates its bar, counts, buttons and each finished tile (the
// server renders the tile with the page's own template); the job list updates
// each open row's bar, status and counts.
(function () {
  "use strict";
  var OPEN = { queued: true, running: true };
  var MAX_DELAY = 15000;

  function setBar(bar, percent, fraction) {
    bar.setAttribute("aria-valuenow", String(percent));
    bar.firstElementChild.style.width = (fraction * 100).toFixed(1) + "%";
  }

  function setStatus(pill, status) {
    pill.className = "status status-" + status;
    pill.textContent = status.charAt(0).toUpperCase() + status.slice(1);
  }

  function poller(url, every, query, apply) {
    var delay = every, closedPolls = 0;
    function tick() {
      fetch(url + query(), { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.redirected || response.status === 401 || response.status === 403 || response.status === 404) {
            return null;  // logged out or gone: stop quietly
          }
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          if (!data) return;
          var keepGoing = apply(data);
          delay = every;
          if (!data.is_open) {
            // A cancelled job's last batch may still land; look a few more times, slower.
            closedPolls += 1;
            delay = Math.min(every * Math.pow(1.5, closedPolls), MAX_DELAY);
            if (closedPolls > 12) keepGoing = false;
          }
          if (keepGoing) setTimeout(tick, delay);
        })
        .catch(function () {
          delay = Math.min(delay * 2, MAX_DELAY);
          setTimeout(tick, delay);
        });
    }
    setTimeout(tick, every);
  }

  // --- Job page -------------------------------------------------------------
  var card = document.getElementById("job-progress");
  if (card && card.dataset.progressUrl) {
    var gallery = document.getElementById("gallery");
    var actions = document.getElementById("job-actions");
    var title = document.title.replace(/^\(\d+%\) /, "");

    var openTiles = function () {
      return Array.prototype.filter.call(gallery.querySelectorAll(".tile"), function (tile) {
        return OPEN[tile.dataset.status];
      });
    };

    var applyJob = function (data) {
      setStatus(document.getElementById("job-status"), data.status);
      document.getElementById("job-percent").textContent = data.percent + "%";
      setBar(document.getElementById("job-bar"), data.percent, data.progress);
      document.getElementById("count-succeeded").textContent = data.succeeded;
      document.getElementById("count-failed").textContent = data.failed;
      document.getElementById("count-failed").className = data.failed ? "bad" : "";
      document.getElementById("count-total").textContent = data.total;
      document.title = (data.is_open ? "(" + data.percent + "%) " : "") + title;
      // Replace the buttons only when they change, never under a hovering pointer.
      if (actions.dataset.key !== data.actions_key) {
        actions.innerHTML = data.actions_html;
        actions.dataset.key = data.actions_key;
      }
      data.items.forEach(function (item) {
        var tile = gallery.querySelector('.tile[data-item="' + item.id + '"]');
        if (tile && tile.dataset.status !== item.status) tile.outerHTML = item.html;
      });
      card.dataset.open = data.is_open ? "1" : "0";
      return data.is_open || openTiles().length > 0;
    };

    if (card.dataset.open === "1" || openTiles().length) {
      poller(card.dataset.progressUrl, 1000, function () {
        var ids = openTiles().map(function (tile) { return tile.dataset.item; });
        return ids.length ? "?items=" + ids.join(",") : "";
      }, applyJob);
    }
  }

  // --- Job list -------------------------------------------------------------
  Array.prototype.forEach.call(document.querySelectorAll(".job-row[data-progress-url]"), function (row) {
    // Every 3 s: a page may list 20 open jobs.
    poller(row.dataset.progressUrl, 3000, function () { return ""; }, function (data) {
      setStatus(row.querySelector('[data-field="status"]'), data.status);
      row.querySelector('[data-field="percent"]').textContent = data.percent + "%";
      setBar(row.querySelector(".bar"), data.percent, data.progress);
      var counts = row.querySelector('[data-field="counts"]');
      counts.textContent = data.finished + " of " + data.total + " done";
      if (data.failed) {
        var failed = document.createElement("span");
        failed.className = "bad";
        failed.textContent = data.failed + " failed";
        counts.append(" · ", failed);
      }
      return data.is_open;
    });
  });
})();
