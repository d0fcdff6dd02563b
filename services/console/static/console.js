// Live parts of the console. An element with data-live="<keys>" and data-src="<url>" is fetched
// again (by htmx) when the console's Kafka feed reports a change to one of its keys: a
// correlation id, a pipeline name, or "*" for any change. No inline script: the pages forbid it.
(function () {
  "use strict";
  if (!window.EventSource || !window.htmx) {
    return;
  }
  // One fetch at a time per element; a change heard meanwhile fetches once more when it is done,
  // so the last change is never lost.
  var inFlight = new Set();
  var again = new Set();
  function refresh(id, url) {
    if (inFlight.has(id)) {
      again.add(id);
      return;
    }
    inFlight.add(id);
    htmx.ajax("GET", url, { target: "#" + id, swap: "outerHTML" }).finally(function () {
      inFlight.delete(id);
      if (again.delete(id)) {
        refresh(id, url);
      }
    });
  }
  var source = new EventSource("/events");
  source.addEventListener("change", function (message) {
    var keys = JSON.parse(message.data);
    document.querySelectorAll("[data-live]").forEach(function (element) {
      var wanted = element.getAttribute("data-live").split(" ");
      var hit = wanted.indexOf("*") >= 0 || keys.some(function (key) { return wanted.indexOf(key) >= 0; });
      if (hit) {
        refresh(element.id, element.getAttribute("data-src"));
      }
    });
  });
  window.addEventListener("pagehide", function () { source.close(); });
})();
