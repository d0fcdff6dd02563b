// Live parts of the console. An element with data-live="<keys>" and data-src="<url>" is fetched
// again (by htmx) when the console's Kafka feed reports a change to one of its keys: a
// correlation id, a pipeline name, or "*" for any change. No inline script: the pages forbid it.
(function () {
  "use strict";
  if (!window.EventSource || !window.htmx) {
    return;
  }
  var pending = new Set();
  var source = new EventSource("/events");
  source.addEventListener("change", function (message) {
    var keys = JSON.parse(message.data);
    document.querySelectorAll("[data-live]").forEach(function (element) {
      var wanted = element.getAttribute("data-live").split(" ");
      var hit = wanted.indexOf("*") >= 0 || keys.some(function (key) { return wanted.indexOf(key) >= 0; });
      if (hit && !pending.has(element.id)) {
        pending.add(element.id);
        htmx.ajax("GET", element.getAttribute("data-src"), { target: "#" + element.id, swap: "outerHTML" })
          .finally(function () { pending.delete(element.id); });
      }
    });
  });
  window.addEventListener("pagehide", function () { source.close(); });
})();
