/* Live event streams of a project or a ticket (tickets/consumers.py), for the portal's pages.
 *
 *   const sub = window.HAAO.live.subscribe("/ws/o/acme/projects/PAY/events/", {
 *     after: 0,                        // the last seq the page already shows
 *     onEvent(event) { ... },          // {seq, created_at, type, actor_type, actor_label,
 *                                      //  target_type, target_label, data}, in seq order, once
 *     onStatus(state) { ... },         // connecting | live | reconnecting | closed | refused
 *   });
 *   sub.close();
 *
 * A dropped socket reconnects with capped exponential back-off and jitter and resumes after
 * the last seq it saw, so no event is lost or shown twice. Close codes 4400 (bad request),
 * 4403 (not allowed) and 4404 (not found) are final: the state becomes "refused".
 * Plain script, no build step, no modules.
 */
(function () {
  "use strict";

  var REFUSED = { 4400: true, 4403: true, 4404: true };
  var BACKOFF_FIRST_MS = 500;
  var BACKOFF_MAX_MS = 15000;

  function streamUrl(path, after) {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    var clean = String(path).split("?")[0];
    if (clean.charAt(0) !== "/") clean = "/" + clean;
    // batch=1: the events the server has for this page at once come as one message.
    return scheme + "//" + window.location.host + clean + "?after=" + encodeURIComponent(after) +
      "&batch=1";
  }

  function subscribe(path, options) {
    options = options || {};
    var lastSeq = Math.max(0, parseInt(options.after, 10) || 0);
    var onEvent = options.onEvent || function () {};
    var onStatus = options.onStatus || function () {};
    var socket = null;
    var timer = null;
    var failures = 0;
    var state = null;
    var stopped = false;

    function setState(next) {
      if (next === state) return;
      state = next;
      try { onStatus(next); } catch (error) { console.error(error); }
    }

    function delay() {
      // Full jitter: a server restart does not bring every page back at the same instant.
      var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * Math.pow(2, failures));
      return Math.round(ceiling / 2 + Math.random() * ceiling / 2);
    }

    function schedule() {
      if (stopped || timer !== null) return;
      setState("reconnecting");
      timer = window.setTimeout(function () { timer = null; open(); }, delay());
      failures += 1;
    }

    function deliver(event) {
      var seq = event && event.seq;
      if (typeof seq !== "number" || seq <= lastSeq) return; // already shown
      lastSeq = seq;
      try { onEvent(event); } catch (error) { console.error(error); }
    }

    function open() {
      if (stopped) return;
      if (state === null) setState("connecting");
      var current;
      try {
        current = new WebSocket(streamUrl(path, lastSeq));
      } catch (error) {
        console.error(error);
        schedule();
        return;
      }
      socket = current;
      current.onmessage = function (message) {
        if (socket !== current) return;
        var data;
        try { data = JSON.parse(message.data); } catch (error) { return; }
        if (data.type === "event" && data.event) {
          deliver(data.event);
        } else if (data.type === "events" && Array.isArray(data.events)) {
          data.events.forEach(deliver);
        } else if (data.type === "caught_up") {
          failures = 0;
          setState("live");
        }
      };
      current.onclose = function (event) {
        if (socket !== current) return;
        socket = null;
        if (stopped) return;
        if (REFUSED[event.code]) {
          stopped = true;
          setState("refused");
          return;
        }
        schedule();
      };
    }

    function onOnline() {
      // Back on the network: try now rather than at the end of the back-off.
      if (!stopped && timer !== null) {
        window.clearTimeout(timer);
        timer = null;
        open();
      }
    }

    window.addEventListener("online", onOnline);
    open();

    return {
      close: function () {
        window.removeEventListener("online", onOnline);
        if (stopped && (state === "closed" || state === "refused")) return;
        stopped = true;
        if (timer !== null) { window.clearTimeout(timer); timer = null; }
        if (socket !== null) {
          var current = socket;
          socket = null;
          try { current.close(1000); } catch (error) { /* already closing */ }
        }
        setState("closed");
      },
      lastSeq: function () { return lastSeq; },
    };
  }

  window.HAAO = window.HAAO || {};
  window.HAAO.live = { subscribe: subscribe };
})();
