// Refreshes the page's live part every few seconds without reloading the page: the daemon
// answers a request with the X-Refresh header with that part only. No inline script, no
// other origin: the page's Content-Security-Policy allows this file alone.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var stale = document.getElementById("stale");
  if (!live) {
    return;
  }
  var every = Number(document.body.getAttribute("data-refresh-ms")) || 5000;
  var busy = false;

  function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    fetch(window.location.href, {
      headers: { "X-Refresh": "live" },
      credentials: "same-origin",
      cache: "no-store",
      redirect: "manual",
    })
      .then(function (response) {
        if (response.status === 401 || response.type === "opaqueredirect") {
          window.location.reload(); // the login ended: the page sends us to the login form
          return null;
        }
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        if (html !== null) {
          live.innerHTML = html;
          document.body.setAttribute("data-refreshed", String(Date.now()));
          if (stale) {
            stale.hidden = true;
          }
        }
      })
      .catch(function () {
        if (stale) {
          stale.hidden = false; // the daemon restarts or is gone: keep the last figures
        }
      })
      .finally(function () {
        busy = false;
      });
  }

  window.setInterval(refresh, every);
  document.addEventListener("visibilitychange", refresh);
})();
