/* Django admin: status badges ([data-live-build]) that follow their build live. On a
   build's change page the log viewer's socket carries the status; on the change list
   each unfinished build gets a status-only socket. */
(function () {
  "use strict";

  function update(build) {
    document.querySelectorAll('[data-live-build="' + build.build_uuid + '"]').forEach((badge) => {
      const label = build.status === "stopped" ? build.build_outcome : build.status;
      badge.className = "status status--" + label;
      badge.textContent = label;
      badge.dataset.status = build.status;
    });
  }

  document.addEventListener("buildsite:status", (event) => update(event.detail));
  document.addEventListener("DOMContentLoaded", () => {
    if (document.querySelector("[data-log-socket]")) return;
    document.querySelectorAll('[data-live-build]:not([data-status="stopped"])').forEach((badge) => {
      const path = "/ws/admin/builds/" + badge.dataset.liveBuild + "/?logs=0";
      const live = new Buildsite.LiveSocket(() => path, (message) => {
        if (message.type !== "status") return;
        update(message.build);
        if (message.build.status === "stopped") live.stop();
      });
    });
  });
})();
