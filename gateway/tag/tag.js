// Tagway first-party tag. Served minified at /t.js; this file is the source.
//
// Snippet (the queue stub works before the tag loads):
//   <script>
//   !function(w,d,s){w.tw=w.tw||function(){(w.tw.q=w.tw.q||[]).push(arguments)};
//   var e=d.createElement("script");e.async=1;e.src=s;d.head.appendChild(e)}(window,document,"/t.js");
//   tw("init","demo"); tw("page");
//   </script>
//
// API: tw("init", site, {endpoint, cmpTimeout}), tw("page"),
// tw("track", name, properties, {event_id}) -> event_id, tw("identify",
// {email, phone, external_id}) (hashed here with SubtleCrypto before anything
// leaves the page), tw("consent", {analytics, ads, ...}), tw("video", el).
// Never throws into the host page; defines no global but tw.
(function (w, d) {
  "use strict";
  var VERSION = "1";
  // The batch path, replaced per site when the gateway serves this tag
  // (sites may mount their paths under a prefix that blockers don't list).
  var BATCH_PATH = "/__TW_BATCH_PATH__";
  var MAX_BATCH = 20, FLUSH_MS = 1000, CLICK_IDS = ["ttclid", "gclid", "fbclid", "msclkid"];
  var cfg = { site: "", endpoint: "", cmpTimeout: 500 };
  var queue = [], user = {}, consent = {}, timer = 0, pending = [], ready = false, cmpWait = null;

  function safe(fn) {
    return function () {
      try { return fn.apply(this, arguments); } catch (e) { /* never throw into the page */ }
    };
  }

  function hex(buf) {
    var b = new Uint8Array(buf), s = "";
    for (var i = 0; i < b.length; i++) s += (b[i] < 16 ? "0" : "") + b[i].toString(16);
    return s;
  }

  function randomId() {
    var b = new Uint8Array(16);
    (w.crypto || {}).getRandomValues ? w.crypto.getRandomValues(b) : b.forEach(function (_, i) { b[i] = Math.random() * 256; });
    return Date.now().toString(16) + "-" + hex(b.buffer).slice(0, 20);
  }

  // sha256 hex of s, or s itself when it already is one (64 hex digits).
  function sha256(s) {
    if (/^[0-9a-fA-F]{64}$/.test(s)) return Promise.resolve(s.toLowerCase());
    if (!(w.crypto && w.crypto.subtle)) return Promise.resolve(""); // no hashing: send nothing raw
    return w.crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)).then(hex);
  }

  // Normalisation as the gateway does it: email trimmed and lowercased, phone
  // as E.164 digits without "+", external id trimmed.
  function normEmail(v) { return String(v).trim().toLowerCase(); }
  function normPhone(v) {
    var s = String(v).trim(), digits = s.replace(/[^0-9]/g, "");
    if (s.charAt(0) !== "+" && digits.indexOf("00") === 0) digits = digits.slice(2);
    return digits;
  }

  function storage() { try { return w.sessionStorage; } catch (e) { return null; } }

  // Click ids from the landing URL, kept for the session.
  function clickIds() {
    var st = storage(), q = new URLSearchParams(w.location.search);
    CLICK_IDS.forEach(function (k) {
      var v = q.get(k);
      if (v && st) st.setItem("_tw_" + k, v.slice(0, 500));
    });
    var ids = {};
    CLICK_IDS.forEach(function (k) {
      var v = st && st.getItem("_tw_" + k);
      if (!v) return;
      if (k === "fbclid") ids.fbc = "fb.1." + Date.now() + "." + v; // Meta's fbc format
      else ids[k] = v;
    });
    return ids;
  }

  // ---- consent signals -----------------------------------------------------

  function collectSignals() {
    var waits = [];
    if (typeof w.__tcfapi === "function") {
      waits.push(new Promise(function (res) {
        w.__tcfapi("addEventListener", 2, function (tc, ok) {
          if (ok && tc && tc.tcString !== undefined) {
            if (tc.gdprApplies !== false && tc.tcString) consent.tcf = tc.tcString;
            if (tc.eventStatus === "tcloaded" || tc.eventStatus === "useractioncomplete") res();
          }
        });
      }));
    }
    if (typeof w.__gpp === "function") {
      waits.push(new Promise(function (res) {
        var take = function (data) {
          var p = (data && data.pingData) || data;
          if (p && p.gppString) {
            consent.gpp = p.gppString;
            consent.gpp_sid = (p.applicableSections || []).filter(function (n) { return n > 0; });
            res();
          }
        };
        try { w.__gpp("addEventListener", take); } catch (e) {}
        try { w.__gpp("ping", take); } catch (e) {}
      }));
    }
    if (typeof w.__uspapi === "function") {
      waits.push(new Promise(function (res) {
        w.__uspapi("getUSPData", 1, function (u, ok) {
          if (ok && u && u.uspString) consent.usp = u.uspString;
          res();
        });
      }));
    }
    if (navigator.globalPrivacyControl === true) consent.gpc = true;
    if (!waits.length) return Promise.resolve();
    // A CMP still loading holds events back, but never for long.
    return Promise.race([Promise.all(waits), new Promise(function (r) { setTimeout(r, cfg.cmpTimeout); })]);
  }

  // ---- transport --------------------------------------------------------

  function payload(events) {
    var u = {}, k, ids = clickIds();
    for (k in user) u[k] = user[k];
    for (k in ids) u[k] = ids[k];
    var c = {};
    for (k in consent) c[k] = consent[k];
    return JSON.stringify({ site: cfg.site, user: u, consent: c, data: events });
  }

  function send(events, beacon) {
    var url = cfg.endpoint + BATCH_PATH, body = payload(events);
    if (beacon && navigator.sendBeacon && navigator.sendBeacon(url, body)) return;
    var attempt = function (n) {
      fetch(url, { method: "POST", body: body, keepalive: true, credentials: "include", headers: { "Content-Type": "text/plain" } })
        .then(function (r) { if (r.status >= 500 && n < 1) attempt(n + 1); })
        .catch(function () { if (n < 1) setTimeout(function () { attempt(n + 1); }, 300); });
    };
    attempt(0);
  }

  function flush(beacon) {
    clearTimeout(timer);
    timer = 0;
    if (!ready || !queue.length) return;
    while (queue.length) send(queue.splice(0, MAX_BATCH), beacon);
  }

  function enqueue(ev) {
    queue.push(ev);
    if (!ready) return;
    if (queue.length >= MAX_BATCH) flush(false);
    else if (!timer) timer = setTimeout(function () { flush(false); }, FLUSH_MS);
  }

  function whenReady() {
    Promise.all(pending).then(function () {
      ready = true;
      if (queue.length) timer = setTimeout(function () { flush(false); }, 0);
    });
  }

  // ---- engagement time -------------------------------------------------

  var visibleSince = d.visibilityState === "visible" ? Date.now() : 0, visibleMs = 0, engagementSent = false;
  function onHide() {
    if (visibleSince) { visibleMs += Date.now() - visibleSince; visibleSince = 0; }
    if (!engagementSent && visibleMs >= 1000 && cfg.site) {
      engagementSent = true;
      queue.push(event("EngagementTime", { seconds: Math.round(visibleMs / 1000) }));
    }
    ready = true;
    flush(true);
  }
  d.addEventListener("visibilitychange", safe(function () {
    if (d.visibilityState === "hidden") onHide();
    else { visibleSince = Date.now(); engagementSent = false; visibleMs = 0; }
  }));
  w.addEventListener("pagehide", safe(onHide));

  // ---- commands ------------------------------------------------------------

  function event(name, props, id) {
    return {
      event: name, event_id: id || randomId(), event_time: Date.now(), properties: props || undefined,
      page: { url: w.location.href, referrer: d.referrer || undefined, title: d.title || undefined }
    };
  }

  var commands = {
    init: function (site, opts) {
      cfg.site = String(site);
      opts = opts || {};
      var src = d.currentScript && d.currentScript.src;
      cfg.endpoint = (opts.endpoint || (src ? new URL(src).origin : w.location.origin)).replace(/\/$/, "");
      if (opts.cmpTimeout >= 0) cfg.cmpTimeout = Math.min(opts.cmpTimeout, 5000);
      clickIds();
      cmpWait = collectSignals();
      pending.push(cmpWait);
      whenReady();
    },
    page: function () { enqueue(event("PageView")); },
    track: function (name, props, opts) {
      var ev = event(String(name), props, opts && opts.event_id ? String(opts.event_id) : "");
      enqueue(ev);
      return ev.event_id;
    },
    identify: function (ids) {
      ids = ids || {};
      var jobs = [];
      if (ids.email) jobs.push(sha256(normEmail(ids.email)).then(function (h) { if (h) user.email = h; }));
      if (ids.phone) jobs.push(sha256(normPhone(ids.phone)).then(function (h) { if (h) user.phone = h; }));
      if (ids.external_id) jobs.push(sha256(String(ids.external_id).trim()).then(function (h) { if (h) user.external_id = h; }));
      // Events tracked after identify wait for the hashes.
      var done = Promise.all(jobs);
      ready = false;
      pending.push(done);
      whenReady();
    },
    consent: function (cats) {
      consent.categories = consent.categories || {};
      for (var k in cats) if (/^[a-z][a-z0-9_]{0,31}$/i.test(k)) consent.categories[k] = cats[k] === true;
    },
    video: function (el) {
      if (!el || !el.addEventListener) return;
      var sent = {};
      el.addEventListener("timeupdate", safe(function () {
        if (!el.duration) return;
        var pct = (el.currentTime / el.duration) * 100;
        [25, 50, 75, 100].forEach(function (p) {
          if (pct >= p - 0.5 && !sent[p]) {
            sent[p] = true;
            enqueue(event("VideoProgress", { percent: p, content_id: el.currentSrc ? String(el.currentSrc).slice(0, 256) : undefined }));
          }
        });
      }));
    }
  };

  var run = safe(function (args) {
    var fn = commands[args[0]];
    return fn ? fn.apply(null, Array.prototype.slice.call(args, 1)) : undefined;
  });

  var stub = w.tw, earlier = (stub && stub.q) || [];
  var tw = function () { return run(arguments); };
  tw.version = VERSION;
  w.tw = tw;
  for (var i = 0; i < earlier.length; i++) run(earlier[i]);
})(window, document);
