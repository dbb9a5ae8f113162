// Demo page figures, drawn from peercdn.stats() and events as a site would.
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var samples = []; // {t, cdn, p2p}
  var t0 = Date.now();
  function fmt(b) {
    if (b > 1e6) return (b / 1e6).toFixed(1) + ' MB';
    if (b > 1e3) return (b / 1e3).toFixed(0) + ' kB';
    return b + ' B';
  }
  function draw() {
    var c = $('chart'), ctx = c.getContext('2d');
    var w = c.width = c.clientWidth * devicePixelRatio, h = c.height = c.clientHeight * devicePixelRatio;
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = '#262c35'; ctx.lineWidth = 1;
    ctx.fillStyle = '#9aa5b1'; ctx.font = (11 * devicePixelRatio) + 'px system-ui';
    [0, 50, 100].forEach(function (p) {
      var y = h - 8 - (h - 16) * p / 100;
      ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
      ctx.fillText(p + '%', 4, y - 3);
    });
    if (samples.length < 2) return;
    var span = Math.max(60, (samples[samples.length - 1].t - samples[0].t) / 1000);
    function line(color, value) {
      ctx.strokeStyle = color; ctx.lineWidth = 2 * devicePixelRatio; ctx.beginPath();
      samples.forEach(function (s, i) {
        var x = w * ((s.t - samples[0].t) / 1000) / span, y = h - 8 - (h - 16) * value(s, i);
        i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
      });
      ctx.stroke();
    }
    // Cumulative share, and share over the last 10 s.
    line('#45d48a', function (s) { return s.p2p + s.cdn ? s.p2p / (s.p2p + s.cdn) : 0; });
    line('#2a7a52', function (s, i) {
      var j = Math.max(0, i - 10), a = samples[j];
      var p = s.p2p - a.p2p, d = s.cdn - a.cdn;
      return p + d ? p / (p + d) : 0;
    });
  }
  function tick() {
    var s = peercdn.stats();
    samples.push({ t: Date.now(), cdn: s.cdnBytes, p2p: s.p2pBytes });
    if (samples.length > 600) samples.shift();
    var total = s.cdnBytes + s.p2pBytes;
    $('share').textContent = total ? Math.round(100 * s.p2pBytes / total) + '%' : '–';
    $('peers').textContent = s.peers;
    $('up').textContent = fmt(s.uploadBytes);
    $('p2pb').textContent = fmt(s.p2pBytes);
    $('cdnb').textContent = fmt(s.cdnBytes);
    $('barp2p').style.width = total ? (100 * s.p2pBytes / total) + '%' : '0';
    $('barcdn').style.width = total ? (100 * s.cdnBytes / total) + '%' : '0';
    $('status').textContent = s.error ? 'CDN only: ' + s.error
      : s.control ? 'CDN only: the tracker keeps this viewer off P2P (rollout control cohort)'
      : s.ready ? 'agent ready' : 'loading agent…';
    draw();
  }
  function log(text) {
    var l = $('log'), d = document.createElement('div');
    d.textContent = ((Date.now() - t0) / 1000).toFixed(1) + 's ' + text;
    l.prepend(d);
    while (l.childNodes.length > 50) l.removeChild(l.lastChild);
  }
  window.addEventListener('load', function () {
    peercdn.on('segment', function (seg) { log('segment ' + seg.source + ' ' + fmt(seg.bytes)); });
    peercdn.on('peer-connected', function (e) { log('peer connected ' + e.peer.slice(0, 6)); });
    peercdn.on('peer-gone', function (e) { log('peer gone ' + e.peer.slice(0, 6)); });
    setInterval(tick, 1000);
    tick();
  });
  window.demoSource = function (fallback) {
    var q = new URLSearchParams(location.search);
    $('src').value = q.get('src') || fallback;
    return $('src').value;
  };
})();
