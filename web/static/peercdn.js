/* peercdn: peer-assisted segment loading for hls.js, Shaka Player and dash.js.
 *
 * Script tag: <script src="https://TRACKER/peercdn.js"></script>, then
 *   hls.js:  const hls = new Hls(); peercdn.hlsjs(hls); hls.loadSource(url); ...
 *   Shaka:   const player = new shaka.Player(); peercdn.shaka(player); ... (HLS and DASH)
 *   dash.js: const player = dashjs.MediaPlayer().create(); peercdn.dashjs(player); player.initialize(...)
 * npm (web/npm, an ES module of this same file):
 *   import { configure, hlsjs, shaka, dashjs } from 'peercdn';
 *   configure({ tracker: 'wss://tracker.example.com/ws' }); hlsjs(hls); shaka(player, shakaLib);
 * Options: window.peercdnConfig before the script tag, or configure({...})
 * at any time (a running agent takes upload, uploadBytesPerSecond,
 * maxPeers, maxWaitMs and cdnSafetyMs at once). peercdn.d.ts documents
 * every option and event.
 * The player starts on the CDN at once; the agent (WebAssembly) loads in
 * parallel and takes over segment loading when ready. If it cannot load, or
 * the browser lacks WebRTC, everything keeps working from the CDN.
 */
// peercdnFactory builds the API. env: {script} (the script tag: the agent
// and the default tracker are on its server, and it starts at once) or
// {moduleURL} (the ES module: the agent beside the module unless
// agentURL says otherwise, the tracker from configure, and it starts at
// the first hlsjs/shaka/consent call).
var peercdnFactory = function (env) {
  'use strict';
  var WASM = '__PEERCDN_WASM__'; // the agent's file name, filled in by the build
  var RELEASE = '__PEERCDN_RELEASE__';
  var script = env.script;
  var base = script ? new URL('.', script.src) : env.moduleURL ? new URL('.', env.moduleURL) : new URL('/', location.href);
  var defaults = { upload: true, debug: false, metered: 'consume-only', hiddenTab: 'normal', worker: true };
  if (script) defaults.tracker = (base.protocol === 'https:' ? 'wss://' : 'ws://') + base.host + '/ws';
  var opts = Object.assign(defaults, window.peercdnConfig || {});

  var attachedOnce = false; // a player was attached (playerAttached)
  var state = { ready: false, failed: null, destroyed: false, listeners: {}, cdnFallback: { cdnBytes: 0 }, early: [] };
  var kick;
  var kicked = new Promise(function (resolve) { kick = resolve; });
  if (script) kick();

  // handOver gives the agent a segment the player fetched from the CDN on
  // its own, to share as its own CDN copies (agent.Adopt): the first
  // viewer's startup segments were in no cache, and the next viewer
  // fetched them from the CDN again. Before the agent starts, up to 8 wait
  // (copies: the player may transfer its buffer), and their swarms are
  // joined as it starts, not at the player's next load.
  // timing is {firstByteMs, totalMs} of the player's load, when known: the
  // agent tells players' ABR what the CDN takes, and a first segment from
  // a peer was otherwise reported at the peer's speed.
  function handOver(manifestURL, url, data, timing, range) {
    if (state.destroyed || state.failed || !data || !data.byteLength) return;
    var req = JSON.stringify({ content: opts.contentId || '', manifest: manifestURL || '', url: url, range: range || '' });
    if (usable()) {
      adopt({ req: req, url: url, data: new Uint8Array(data), timing: timing }); // copied at once, before the player moves on
    } else if (!state.ready && state.early.length < 8) {
      state.early.push({ req: req, url: url, data: new Uint8Array(data.slice(0)), timing: timing });
    }
  }
  function adopt(e) {
    var t = e.timing;
    if (t && t.totalMs > 0 && !cachedLoad(e.url)) window.__peercdn.adopt(e.req, e.data, t.firstByteMs, t.totalMs);
    else window.__peercdn.adopt(e.req, e.data);
  }

  function emit(kind, detail) {
    if (opts.trace && kind !== 'segment') (window.__peercdnTrace = window.__peercdnTrace || []).push(['', Math.round(performance.now()), kind, 0]);
    (state.listeners[kind] || []).slice().forEach(function (fn) {
      try { fn(detail); } catch (e) { console.error(e); }
    });
  }
  // The agent's events (agent.Event), as the page sees them.
  window.__peercdnEvent = function (kind, json) {
    var e = JSON.parse(json);
    if (kind === 'segment') {
      var g = e.segment || {};
      emit('segment', { seq: g.seq, source: g.source, bytes: g.bytes, ms: (g.durationNs || 0) / 1e6, by: 'agent' });
    } else {
      delete e.kind;
      emit(kind, e);
    }
  };

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var s = document.createElement('script');
      s.src = src; s.onload = resolve; s.onerror = function () { reject(new Error('cannot load ' + src)); };
      document.head.appendChild(s);
    });
  }

  // agentInWorker starts the agent in a Web Worker (worker option) and
  // resolves to what stands in for it on the page (window.__peercdn's
  // calls, as messages). Workers have no RTCPeerConnection: the agent's
  // peer connections stay here, each call and event passed across
  // (rtcHost), while the Go runtime, the protocol, the hashing and the
  // cache run in the worker. The worker is made from a Blob, so that it
  // has the page's origin wherever this script and the agent come from.
  function agentInWorker(execURL, wasmURL) {
    return new Promise(function (resolve, reject) {
      var code = '(' + agentWorker.toString() + ')(' + JSON.stringify({ exec: execURL, wasm: wasmURL }) + ');';
      var url = URL.createObjectURL(new Blob([code], { type: 'text/javascript' }));
      var w;
      try { w = new Worker(url); } catch (e) { URL.revokeObjectURL(url); reject(e); return; }
      var post = function (m, transfer) { w.postMessage(m, transfer || []); };
      var host = rtcHost(post);
      var loads = {}, lastStats = '{}', onStarted = null, onDestroyed = null, up = false, dead = null;
      // died: the agent worker failed or its Go program exited. Its loads,
      // and any later, fail at once, and go to the CDN as without peercdn
      // (waiting for each to time out would be worse than no agent).
      var died = function (why) {
        if (dead) return;
        dead = why;
        console.warn('peercdn: the agent worker stopped: ' + why);
        Object.keys(loads).forEach(function (id) { loads[id][1](new Error(why)); });
        loads = {};
        host.close();
      };
      var agent = {
        start: function (json) {
          return new Promise(function (res) { onStarted = res; post({ t: 'start', opts: json }); });
        },
        load: function (json, id) {
          if (dead) return Promise.reject(new Error(dead));
          return new Promise(function (res, rej) { loads[id] = [res, rej]; post({ t: 'load', req: json, id: id }); });
        },
        cancel: function (id) { post({ t: 'cancel', id: id }); },
        adopt: function (req, data, firstByteMs, totalMs) {
          var copy = data.slice(); // the player keeps its bytes
          post({ t: 'adopt', req: req, data: copy, fb: firstByteMs, total: totalMs }, [copy.buffer]);
        },
        report: function (cdn, stallMs) { post({ t: 'report', cdn: cdn, stall: stallMs }); },
        flush: function () { post({ t: 'flush' }); },
        // The worker's answer would come after configure returned: the
        // values are checked here first, as agent.Configure checks them
        // (it still does, and logs what it refuses).
        configure: function (json) {
          var bad = refusedLive(JSON.parse(json));
          if (!bad) post({ t: 'configure', json: json });
          return bad;
        },
        stats: function () { return lastStats; }, // as the worker last said (it says so every 250 ms and after each load)
        destroy: function () {
          return new Promise(function (res) {
            onDestroyed = function () { host.close(); w.terminate(); res(); };
            post({ t: 'destroy' });
          });
        },
        terminate: function () { host.close(); w.terminate(); },
      };
      w.onerror = function (e) {
        var why = 'agent worker: ' + (e.message || 'failed');
        if (!up) reject(new Error(why)); else died(why);
      };
      w.onmessage = function (e) {
        var m = e.data, l;
        if (host.handle(m)) return;
        switch (m.t) {
          case 'up': up = true; URL.revokeObjectURL(url); resolve(agent); break;
          case 'failed': URL.revokeObjectURL(url); w.terminate(); reject(new Error(m.err)); break;
          case 'started': if (onStarted) onStarted(m.err); break;
          case 'loaded':
            l = loads[m.id];
            delete loads[m.id];
            if (!l) break;
            if (m.err) l[1](new Error(m.err)); else l[0](m.res);
            break;
          case 'stats': lastStats = m.json; break;
          case 'event': if (window.__peercdnEvent) window.__peercdnEvent(m.kind, m.json); break;
          case 'destroyed': if (onDestroyed) onDestroyed(); break;
          case 'exited': if (!onDestroyed) died('the agent exited'); break;
        }
      };
    });
  }

  // refusedLive says why agent.Configure (agent/live.go) would refuse the
  // live options o, in its words, or null.
  function refusedLive(o) {
    var n = function (k) { return k in o && o[k] !== null && o[k] !== undefined; };
    if (n('uploadBytesPerSecond') && !(o.uploadBytesPerSecond >= 0)) return 'agent: config: negative UploadBytesPerSecond';
    if (n('maxPeers') && !(o.maxPeers >= 1 && o.maxPeers <= 64)) return 'agent: config: MaxPeers ' + o.maxPeers + ' outside 1..64';
    if (n('maxWaitMs') && !(o.maxWaitMs > 0)) return 'agent: config: MaxWait must be positive';
    if (n('cdnSafetyMs') && !(o.cdnSafetyMs >= 0)) return 'agent: config: negative CDNSafety';
    return null;
  }

  // rtcHost keeps the agent worker's peer connections: post sends to the
  // worker; handle(m) takes the worker's WebRTC calls, and says whether m
  // was one. Ids of channels are the worker's ('w'…) or this side's
  // ('m'…, a peer's channel arriving).
  function rtcHost(post) {
    var pcs = {}, dcs = {}, owned = {}, n = 0;
    function desc(d) { return d ? { type: d.type, sdp: d.sdp } : null; }
    function wire(pcID, id, dc) {
      dcs[id] = dc;
      owned[pcID].push(id);
      dc.binaryType = 'arraybuffer';
      dc.onopen = function () { post({ t: 'dc.open', dc: id }); };
      dc.onclose = function () { delete dcs[id]; post({ t: 'dc.close', dc: id }); };
      dc.onmessage = function (e) { post({ t: 'dc.msg', dc: id, data: e.data }, e.data instanceof ArrayBuffer ? [e.data] : []); };
      dc.onbufferedamountlow = function () { post({ t: 'dc.low', dc: id, buffered: dc.bufferedAmount }); };
    }
    function drop(pcID) {
      var pc = pcs[pcID];
      if (!pc) return;
      delete pcs[pcID];
      owned[pcID].forEach(function (id) {
        var dc = dcs[id];
        delete dcs[id];
        if (dc) dc.onopen = dc.onclose = dc.onmessage = dc.onbufferedamountlow = null;
      });
      delete owned[pcID];
      pc.onicecandidate = pc.onconnectionstatechange = pc.ondatachannel = null;
      try { pc.close(); } catch (e) { /* closed */ }
    }
    function handle(m) {
      var pc = pcs[m.pc], dc = dcs[m.dc];
      switch (m.t) {
        case 'pc.new':
          try {
            pc = pcs[m.pc] = new RTCPeerConnection(m.cfg);
          } catch (e) {
            post({ t: 'pc.state', pc: m.pc, state: 'failed' });
            return true;
          }
          owned[m.pc] = [];
          pc.onicecandidate = function (e) {
            post({ t: 'pc.ice', pc: m.pc, cand: e.candidate ? e.candidate.candidate : null, local: desc(pc.localDescription) });
          };
          pc.onconnectionstatechange = function () { post({ t: 'pc.state', pc: m.pc, state: pc.connectionState }); };
          pc.ondatachannel = function (e) {
            var id = 'm' + (++n);
            wire(m.pc, id, e.channel);
            post({ t: 'pc.dc', pc: m.pc, dc: id, label: e.channel.label, state: e.channel.readyState });
          };
          return true;
        case 'pc.call':
          (pc ? Promise.resolve().then(function () { return pc[m.m](m.arg); }) : Promise.reject(new Error('connection closed')))
            .then(function (v) { post({ t: 'ret', call: m.call, v: { desc: desc(v), local: desc(pc.localDescription) } }); },
              function (e) { post({ t: 'ret', call: m.call, err: String((e && e.message) || e) }); });
          return true;
        case 'pc.channel':
          try {
            if (!pc) throw new Error('connection closed');
            wire(m.pc, m.dc, pc.createDataChannel(m.label, m.init));
          } catch (e) {
            post({ t: 'dc.close', dc: m.dc });
          }
          return true;
        case 'pc.close': drop(m.pc); return true;
        case 'dc.send':
          if (dc && dc.readyState === 'open') {
            try { dc.send(m.data); } catch (e) { /* closing: its close event follows */ }
          }
          post({ t: 'dc.ack', dc: m.dc, n: m.data.length, buffered: dc ? dc.bufferedAmount : 0 });
          return true;
        case 'dc.threshold': if (dc) dc.bufferedAmountLowThreshold = m.n; return true;
        case 'dc.close': if (dc) dc.close(); return true;
      }
      return false;
    }
    return { handle: handle, close: function () { Object.keys(pcs).forEach(drop); } };
  }

  // agentWorker is the agent worker's code (p: {exec, wasm}, the URLs of
  // wasm_exec.js and the agent). It is sent as source, so it uses nothing
  // around it. Its RTCPeerConnection stands in for the page's (rtcHost),
  // with what the agent reads at once (localDescription, connectionState,
  // readyState, bufferedAmount) kept up to date by the page's messages.
  function agentWorker(p) {
    'use strict';
    var calls = 0, waiting = {}, pcs = {}, dcs = {}, n = 0;
    function fire(o, name, ev) { if (typeof o['on' + name] === 'function') o['on' + name](ev); }
    function call(m) {
      m.call = ++calls;
      return new Promise(function (res, rej) { waiting[m.call] = [res, rej]; postMessage(m); });
    }
    function DC(id, label, state) {
      this.id = id; this.label = label; this.readyState = state || 'connecting';
      this.binaryType = 'arraybuffer'; this.unacked = 0; this.queued = 0; this.low = 0;
      dcs[id] = this;
    }
    // bufferedAmount: what the page's channel holds, and what is on its
    // way to it.
    Object.defineProperty(DC.prototype, 'bufferedAmount', { get: function () { return this.unacked + this.queued; } });
    Object.defineProperty(DC.prototype, 'bufferedAmountLowThreshold', {
      get: function () { return this.low; },
      set: function (v) { this.low = v; postMessage({ t: 'dc.threshold', dc: this.id, n: v }); },
    });
    DC.prototype.send = function (data) {
      if (this.readyState !== 'open') throw new Error('data channel not open');
      var copy = typeof data === 'string' ? data : data.slice(); // the agent reuses its buffer
      this.unacked += copy.length;
      postMessage({ t: 'dc.send', dc: this.id, data: copy }, typeof copy === 'string' ? [] : [copy.buffer]);
    };
    DC.prototype.close = function () { postMessage({ t: 'dc.close', dc: this.id }); };
    function PC(cfg) {
      this.id = ++n; this.connectionState = 'new'; this.localDescription = null; this.channels = [];
      pcs[this.id] = this;
      postMessage({ t: 'pc.new', pc: this.id, cfg: JSON.parse(JSON.stringify(cfg)) });
    }
    function method(name, arg) {
      return function (a) {
        var self = this;
        return call({ t: 'pc.call', pc: this.id, m: name, arg: arg ? arg(a) : undefined }).then(function (v) {
          if (v.local) self.localDescription = v.local;
          return v.desc;
        });
      };
    }
    var sd = function (d) { return { type: d.type, sdp: d.sdp }; };
    PC.prototype.createOffer = method('createOffer');
    PC.prototype.createAnswer = method('createAnswer');
    PC.prototype.setLocalDescription = method('setLocalDescription', sd);
    PC.prototype.setRemoteDescription = method('setRemoteDescription', sd);
    PC.prototype.addIceCandidate = method('addIceCandidate', function (c) { return { candidate: c.candidate, sdpMLineIndex: c.sdpMLineIndex }; });
    PC.prototype.createDataChannel = function (label, init) {
      var d = new DC('w' + (++n), label);
      this.channels.push(d.id);
      postMessage({ t: 'pc.channel', pc: this.id, dc: d.id, label: label, init: { ordered: !init || init.ordered !== false } });
      return d;
    };
    PC.prototype.close = function () {
      this.connectionState = 'closed';
      delete pcs[this.id];
      this.channels.forEach(function (id) { delete dcs[id]; }); // closing the connection ends them, unannounced
      postMessage({ t: 'pc.close', pc: this.id });
    };
    self.RTCPeerConnection = PC;

    var statsSent = '';
    function pushStats() {
      if (!self.__peercdn) return;
      var s = self.__peercdn.stats();
      if (s !== statsSent) { statsSent = s; postMessage({ t: 'stats', json: s }); }
    }
    self.__peercdnEvent = function (kind, json) { postMessage({ t: 'event', kind: kind, json: json }); };
    var err = function (e) { return String((e && e.message) || e); };
    self.onmessage = function (e) {
      var m = e.data, pc = pcs[m.pc], dc = dcs[m.dc], w, api = self.__peercdn;
      switch (m.t) {
        case 'ret':
          w = waiting[m.call];
          delete waiting[m.call];
          if (w) { if (m.err !== undefined) w[1](new Error(m.err)); else w[0](m.v); }
          break;
        case 'pc.ice':
          if (!pc) break;
          if (m.local) pc.localDescription = m.local;
          fire(pc, 'icecandidate', { candidate: m.cand === null ? null : { candidate: m.cand } });
          break;
        case 'pc.state':
          if (!pc) break;
          pc.connectionState = m.state;
          fire(pc, 'connectionstatechange', {});
          break;
        case 'pc.dc':
          if (pc) {
            pc.channels.push(m.dc);
            fire(pc, 'datachannel', { channel: new DC(m.dc, m.label, m.state) });
          }
          break;
        case 'dc.open': if (dc) { dc.readyState = 'open'; fire(dc, 'open', {}); } break;
        case 'dc.close':
          if (dc) { delete dcs[m.dc]; dc.readyState = 'closed'; fire(dc, 'close', {}); }
          break;
        case 'dc.msg': if (dc) fire(dc, 'message', { data: m.data }); break;
        case 'dc.ack': if (dc) { dc.unacked -= m.n; dc.queued = m.buffered; } break;
        case 'dc.low': if (dc) { dc.queued = m.buffered; fire(dc, 'bufferedamountlow', {}); } break;
        case 'start':
          WebAssembly.instantiate(module, go.importObject).then(function (inst) {
            go.run(inst).then(function () { postMessage({ t: 'exited' }); });
            if (!self.__peercdn) throw new Error('agent did not start');
            postMessage({ t: 'started', err: self.__peercdn.start(m.opts) || null });
            setInterval(pushStats, 250);
          }).catch(function (e) { postMessage({ t: 'started', err: err(e) }); });
          break;
        case 'load':
          api.load(m.req, m.id).then(function (res) {
            postMessage({ t: 'loaded', id: m.id, res: res }, [res.data.buffer]);
            pushStats();
          }, function (e) { postMessage({ t: 'loaded', id: m.id, err: err(e) }); });
          break;
        case 'cancel': api.cancel(m.id); break;
        case 'adopt':
          if (typeof m.fb === 'number') api.adopt(m.req, m.data, m.fb, m.total);
          else api.adopt(m.req, m.data);
          break;
        case 'report': api.report(m.cdn, m.stall); break;
        case 'flush': api.flush(); break;
        case 'configure':
          w = api.configure(m.json);
          if (w) console.warn('peercdn.configure: ' + w);
          break;
        case 'destroy':
          api.destroy().then(function () { pushStats(); postMessage({ t: 'destroyed' }); });
          break;
      }
    };
    // Compiled at once; the Go runtime starts with the agent ('start').
    var go, module;
    try {
      importScripts(p.exec);
      go = new Go();
      (WebAssembly.compileStreaming ? WebAssembly.compileStreaming(fetch(p.wasm))
        : fetch(p.wasm).then(function (r) { return r.arrayBuffer(); }).then(function (b) { return WebAssembly.compile(b); })
      ).then(function (mod) {
        module = mod;
        postMessage({ t: 'up' });
      }).catch(function (e) { postMessage({ t: 'failed', err: err(e) }); });
    } catch (e) {
      postMessage({ t: 'failed', err: err(e) });
    }
  }

  // With {consent: true} nothing starts (no tracker connection, no WebRTC,
  // so no address is shown to other viewers) until the site calls
  // peercdn.consent(true) after asking the viewer; until then, and after
  // consent(false), everything plays from the CDN.
  var consented = new Promise(function (resolve) {
    state.grant = function () { state.granted = true; resolve(); };
    if (!opts.consent) resolve();
  });

  // started settles when a watched video first plays; or startDelayMs
  // after a player was attached (8 s by default: a video that does not
  // play, autoplay refused); or, with no player attached, startDelayMs
  // (3 s) after the page loaded. Counted from this script, the timer
  // fired during a late joiner's startup on a busy page, whose player's
  // script took 3.3 s to load after this one, and the agent's start
  // delayed its first frame.
  var startTimer = 0;
  var started = new Promise(function (resolve) {
    state.played = resolve;
    var arm = function () {
      if (!attachedOnce) startTimer = setTimeout(resolve, opts.startDelayMs >= 0 ? opts.startDelayMs : 3000);
    };
    if (document.readyState === 'complete') arm();
    else window.addEventListener('load', arm);
  });
  // playerAttached starts what a player needs: the agent's loading
  // (kick), and its start at the video's first frame or the timer.
  function playerAttached() {
    kick();
    if (attachedOnce) return;
    attachedOnce = true;
    clearTimeout(startTimer);
    setTimeout(state.played, opts.startDelayMs >= 0 ? opts.startDelayMs : 8000);
  }

  var ready = (async function () {
    await kicked;
    await consented;
    if (state.destroyed) throw new Error('consent withdrawn');
    if (typeof RTCPeerConnection === 'undefined') throw new Error('no WebRTC in this browser');
    if (typeof WebAssembly === 'undefined') throw new Error('no WebAssembly in this browser');
    if (!opts.tracker) throw new Error('no tracker: configure({tracker: "wss://.../ws"})');
    applyNetwork();
    var execURL = new URL(opts.wasmExecURL || 'wasm_exec.js', base).href;
    var src = new URL(opts.agentURL || WASM, base).href;
    if (opts.worker) {
      // The agent in a Web Worker (the default): the Go runtime, its start
      // and its work leave the page's main thread to the player (in the
      // field harness a page's main thread did 6-10 s over a run instead
      // of 14-17 s; plain hls.js, 4-7 s). It still starts at the
      // first frame (started): on a busy machine its start took the cores
      // the players' startups needed (started at once: startup medians 23%
      // and 39% above plain hls.js's, one field run each, for no offload).
      // A page that cannot create a worker (a CSP without blob: workers)
      // runs the agent as below.
      var inWorker = null;
      try {
        inWorker = await agentInWorker(execURL, src);
      } catch (e) {
        console.warn('peercdn: no agent worker (' + e.message + '): the agent runs on the main thread');
      }
      if (inWorker) {
        await started;
        if (opts.trace) (window.__peercdnTrace = window.__peercdnTrace || []).push(['', Math.round(performance.now()), 'start', 0]);
        if (state.destroyed) { inWorker.terminate(); throw new Error('destroyed before start'); }
        window.__peercdn = inWorker;
        var werr = await inWorker.start(JSON.stringify(agentOptions()));
        if (werr) { inWorker.terminate(); throw new Error(werr); }
        return started0();
      }
    }
    if (typeof Go === 'undefined') await loadScript(execURL);
    var go = new Go();
    // Compiling runs off the main thread; starting the Go runtime and the
    // agent (its tracker connection, its peer connections) does not, and
    // delayed hls.js by 0.2-2 s at startup when it ran at once: it waits
    // until the video plays, whose first segments come from the CDN as
    // they would without peercdn.
    var module = WebAssembly.compileStreaming
      ? await WebAssembly.compileStreaming(fetch(src))
      : await WebAssembly.compile(await (await fetch(src)).arrayBuffer());
    await started;
    if (opts.trace) (window.__peercdnTrace = window.__peercdnTrace || []).push(['', Math.round(performance.now()), 'start', 0]);
    if (state.destroyed) throw new Error('destroyed before start');
    go.run(await WebAssembly.instantiate(module, go.importObject));
    if (!window.__peercdn) throw new Error('agent did not start');
    var err = window.__peercdn.start(JSON.stringify(agentOptions()));
    if (err) throw new Error(err);
    started0();
  })().catch(function (e) {
    state.failed = e;
    console.warn('peercdn: playing from the CDN only:', e.message);
    emit('error', { reason: e.message });
  });
  // started0 marks the agent ready, wherever it runs.
  function started0() {
    state.ready = true;
    // Hand over what the player loaded meanwhile; adopting joins its swarm,
    // so peers connect now rather than at the player's next load.
    state.early.forEach(adopt);
    state.early = [];
    report(0, 0); // what the player got before
    emit('ready', {});
  }

  // agentOptions is what the agent starts with: the options, with the
  // network's and the tab's rules applied to uploading.
  function agentOptions() {
    var o = Object.assign({}, opts);
    o.upload = uploading();
    return o;
  }
  // uploading: the site's upload option, unless the connection is metered
  // (Save-Data, or cellular where the Network Information API says so)
  // and metered is 'consume-only', or the tab is hidden and hiddenTab is
  // 'consume-only'.
  function uploading() {
    if (opts.upload === false) return false;
    var c = navigator.connection;
    var metered = !!c && (c.saveData || c.type === 'cellular');
    if (metered && opts.metered !== 'upload') return false;
    if (document.visibilityState === 'hidden' && opts.hiddenTab === 'consume-only') return false;
    return true;
  }
  var lastUpload = null;
  // applyNetwork tells a running agent when uploading() changes.
  function applyNetwork() {
    var up = uploading();
    if (up === lastUpload) return;
    lastUpload = up;
    if (usable() && window.__peercdn.configure) window.__peercdn.configure(JSON.stringify({ upload: up }));
  }
  if (navigator.connection && navigator.connection.addEventListener) navigator.connection.addEventListener('change', applyNetwork);
  document.addEventListener('visibilitychange', applyNetwork);

  // bufferAhead is how much media is buffered past the playhead, in ms.
  function bufferAhead(media) {
    if (!media || !media.buffered) return 0;
    var t = media.currentTime, b = media.buffered;
    for (var i = 0; i < b.length; i++) {
      if (b.start(i) <= t + 0.1 && t < b.end(i)) return (b.end(i) - t) * 1000;
    }
    return 0;
  }

  function usable() { return state.ready && !state.destroyed; }

  // firstStarts holds, per video element, the time of the first segment its
  // player asked for: the playhead until playback starts.
  var firstStarts = new WeakMap();
  function noteStart(media, start) {
    if (media && typeof start === 'number' && isFinite(start) && !firstStarts.has(media)) firstStarts.set(media, start);
  }

  // holdMs is how long a load the player makes before the agent is ready
  // may wait for it: a segment due well ahead of the playhead (a player
  // fills its buffer at startup, 10-30 s of it) waits, so that peers may
  // bring it, until only the CDN's reserve is left before it is due; the
  // first segments, which startup waits for, go to the CDN at once. (Every
  // viewer took its whole startup buffer from the CDN before: in VOD
  // swarms, 8-15 segments each.) 0: no wait. from is the player's first
  // segment time, its playhead before playback starts.
  var holdsUntil = 0; // holds happen in the first 20 s of loads only: the agent's startup
  function holdMs(media, start) {
    var from = media ? firstStarts.get(media) : undefined;
    if (usable() || state.failed || state.destroyed || typeof start !== 'number' || !isFinite(start)) return 0;
    if (opts.consent && !state.granted) return 0; // it may never start
    var now = performance.now();
    if (!holdsUntil) holdsUntil = now + 20000;
    if (now > holdsUntil) return 0;
    var at = media && media.currentTime > 0 ? media.currentTime : from;
    if (typeof at !== 'number' || !isFinite(at) || typeof from !== 'number') return 0;
    var ahead = (start - Math.max(at, from)) * 1000;
    return ahead > 4000 ? Math.min(ahead - 2500, 8000) : 0;
  }
  // whenUsable resolves after at most ms, or when the agent has started or
  // failed: true when loads may go through it.
  function whenUsable(ms) {
    return new Promise(function (resolve) {
      var t = setTimeout(function () { resolve(usable()); }, ms);
      ready.then(function () { clearTimeout(t); resolve(usable()); }, function () { clearTimeout(t); resolve(false); });
    });
  }

  // trace (debug option) logs each segment load of the page's players in
  // window.__peercdnTrace: [folder/file, ms since navigation, how, ms taken], how
  // one of agent:<source>, cdn:not-ready, cdn:guard, cdn:agent-error.
  function trace(url, t0, how) {
    if (!opts.trace) return;
    (window.__peercdnTrace = window.__peercdnTrace || []).push([url.replace(/^.*\/([^/]*\/[^/]*)$/, '$1'), Math.round(t0), how, Math.round(performance.now() - t0)]);
  }

  // The tracker's offload and rebuffering figures (its dashboard) come from
  // the agent's reports: it must also hear of segments the player got from
  // the CDN on its own, and of the player's stalls. Kept until the agent
  // is ready.
  var pending = { cdn: 0, stallMs: 0 };
  function report(cdn, stallMs) {
    pending.cdn += cdn || 0;
    pending.stallMs += stallMs || 0;
    if (!usable() || !(pending.cdn || pending.stallMs)) return;
    window.__peercdn.report(pending.cdn, pending.stallMs);
    pending = { cdn: 0, stallMs: 0 };
  }
  // playerCDN counts n bytes of url the player loaded on its own. A load
  // the browser served from its cache (the agent had just fetched the same
  // URL, when the player fell back while the agent's CDN fetch was under
  // way) cost the CDN nothing: counted, it overstated CDN bytes by 8%. Resource
  // Timing tells: a cache hit has transferSize 0 with a body. (Cross-origin
  // without Timing-Allow-Origin both read 0: counted, as nothing is known.)
  // Its entry may be queued after the load's own event: look a moment later.
  function playerCDN(url, n) {
    setTimeout(function () {
      if (cachedLoad(url)) return;
      state.cdnFallback.cdnBytes += n;
      report(n, 0);
      emit('segment', { url: url, source: 'cdn', bytes: n, by: 'player' });
    }, 250);
  }
  var lastEntry = new Map(); // url -> its latest resource timing entry
  if (typeof PerformanceObserver === 'function') {
    try {
      // The timeline's buffer fills (250 entries) in a long session; an
      // observer sees every entry.
      new PerformanceObserver(function (list) {
        list.getEntries().forEach(function (e) {
          lastEntry.delete(e.name);
          lastEntry.set(e.name, e);
          if (lastEntry.size > 256) lastEntry.delete(lastEntry.keys().next().value);
        });
      }).observe({ type: 'resource' });
    } catch (e) { /* no resource timing: count every load */ }
  }
  function cachedLoad(url) {
    var abs;
    try { abs = new URL(url, location.href).href; } catch (e) { return false; }
    var e = lastEntry.get(abs);
    if (!e && performance.getEntriesByName) {
      var es = performance.getEntriesByName(abs, 'resource');
      e = es[es.length - 1];
    }
    return !!e && e.transferSize === 0 && e.decodedBodySize > 0;
  }

  // A page being hidden or closed sends the agent's report at once: a
  // closed tab's last heartbeat interval (up to 20 s of bytes) was lost to
  // the tracker's figures.
  function flush() { if (usable()) window.__peercdn.flush(); }
  window.addEventListener('pagehide', flush);
  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'hidden') flush();
  });

  // watchStalls times the media element's stalls: waiting after playback
  // started, not for a seek, until it plays again.
  var watched = typeof WeakSet === 'function' ? new WeakSet() : null;
  function watchStalls(media) {
    if (!media || !watched || watched.has(media)) return;
    watched.add(media);
    var waitingAt = 0;
    media.addEventListener('waiting', function () {
      if (!waitingAt && media.currentTime > 0 && !media.seeking && !media.paused) waitingAt = performance.now();
    });
    var resumed = function () {
      state.played(); // the first 'playing' starts the agent
      if (!waitingAt) return;
      var ms = performance.now() - waitingAt;
      waitingAt = 0;
      report(0, ms);
    };
    media.addEventListener('playing', resumed);
    media.addEventListener('seeking', function () { waitingAt = 0; });
  }

  // deadline is how long until the playhead needs a segment starting at
  // start (media seconds; undefined if unknown): the buffer ahead, or less
  // when the segment starts earlier (a quality switch replacing buffer).
  // Until the video has played, and while it cannot play on (readyState
  // below HAVE_FUTURE_DATA: starting, stalled), it is now: a viewer
  // waiting for a peer with 2 s buffered delayed its first frame by 1-3 s.
  function deadline(media, start) {
    if (!media || media.paused || media.readyState < 3 || !media.played || !media.played.length) {
      // Not playing yet: playback starts at the first segment the player
      // asked for, so a segment of its startup buffer is due that much
      // later (less a second for the start itself). Treating them all as
      // due now took every viewer's startup buffer from the CDN, peers or
      // not (VOD: 7-8 segments a viewer).
      var from = media && firstStarts.get(media);
      if (typeof from !== 'number' || typeof start !== 'number' || !isFinite(start)) return 0;
      return Math.max(0, (start - from) * 1000 - 1000);
    }
    var ms = bufferAhead(media);
    if (typeof start === 'number' && isFinite(start)) {
      ms = Math.min(ms, Math.max(0, (start - media.currentTime) * 1000 / (media.playbackRate || 1)));
    }
    return ms;
  }

  // verify (debug option) compares what the agent returned with the CDN.
  function verify(url, res, range) {
    var mine = res.data.slice();
    window.__verify = window.__verify || { ok: 0, bad: [] };
    fetch(url, range ? { headers: { Range: 'bytes=' + range } } : {}).then(function (r) { return r.arrayBuffer(); }).then(function (b) {
      var cdn = new Uint8Array(b), same = cdn.length === mine.length;
      for (var i = 0; same && i < cdn.length; i++) if (cdn[i] !== mine[i]) same = false;
      if (same) window.__verify.ok++;
      else window.__verify.bad.push({ url: url, source: res.source, got: mine.length, want: cdn.length });
    });
  }

  // guardMs is how long a player waits for the agent before going to the
  // CDN itself: the deadline less a reserve, between 0.5 s and 4 s, and
  // later for a segment due far ahead, which the agent waits for peers to
  // bring until it is due within 10 s (agent.Config.FarAhead), then 2.5 s
  // more (MaxWait).
  function guardMs(deadlineMs) {
    return Math.max(500, Math.min(deadlineMs - 1500, Math.max(4000, deadlineMs - 6000)));
  }

  // abrTiming is what a player's bandwidth estimate is told a load took:
  // {firstByteMs, transferMs} (after the first byte, at least 1 ms so that
  // no rate comes out infinite), from the agent's CDN figures, or from the
  // transfer itself before the agent has any.
  function abrTiming(res) {
    var total = res.abrMs > 0 ? res.abrMs : res.transferMs;
    var first = res.abrMs > 0 ? Math.min(res.abrFirstByteMs, total) : 0;
    return { firstByteMs: first, transferMs: Math.max(1, total - first) };
  }

  // load asks the agent for one segment; it resolves to {data, source, ...}.
  // Its cancel() ends the load in the agent: an aborted one must cost
  // nothing more (before, the agent could still go to the CDN seconds
  // after hls.js gave the segment up).
  var loadIds = 0;
  var agentLoad = load;
  function load(manifestURL, url, media, start, range, duration) {
    var req = {
      content: opts.contentId || '',
      manifest: manifestURL || '',
      url: url,
      range: range || '', // "first-last": a segment that is bytes of url (DASH SegmentBase, HLS byte ranges)
      deadlineMs: deadline(media, start),
      // The segment's media seconds: the agent weighs its uplink against
      // the bitrate before seeding for its peers.
      durationMs: typeof duration === 'number' && duration > 0 && isFinite(duration) ? duration * 1000 : 0,
    };
    var id = ++loadIds;
    var p = window.__peercdn.load(JSON.stringify(req), id);
    p.cancel = function () { if (window.__peercdn && window.__peercdn.cancel) window.__peercdn.cancel(id); };
    return p;
  }

  // closedRange is "first-last" for a Range header (or dash.js range) of
  // one closed byte range, '' for none, and null for one the agent does
  // not take (open-ended, several ranges): those go to the CDN as asked.
  function closedRange(h) {
    if (!h) return '';
    var m = /^(?:bytes=)?(\d{1,15})-(\d{1,15})$/.exec(String(h).trim());
    return m && +m[1] <= +m[2] ? m[1] + '-' + m[2] : null;
  }

  // hlsjs makes an hls.js instance load fragments through the agent.
  function hlsjs(hls) {
    if (!hls || !hls.config) throw new TypeError('peercdn.hlsjs(hls): pass an hls.js instance');
    playerAttached();
    var Base = hls.config.loader;
    function PeerLoader(config) {
      this.inner = new Base(config);
      this.stats = this.inner.stats;
      this.context = null;
      this.aborted = false;
    }
    PeerLoader.prototype.load = function (context, config, callbacks) {
      this.context = context;
      var frag = context.frag;
      var range = hlsRange(context);
      if (frag && frag.sn !== 'initSegment' && range !== null) {
        noteStart(hls.media, frag.start);
        var wait = this.held ? 0 : holdMs(hls.media, frag.start);
        if (wait > 0) {
          var me = this;
          this.held = true;
          trace(context.url, performance.now(), 'held');
          whenUsable(wait).then(function () { if (!me.aborted) me.load(context, config, callbacks); });
          return;
        }
      }
      if (!usable() || !frag || frag.sn === 'initSegment' || range === null) {
        if (frag && frag.sn !== 'initSegment') trace(context.url, performance.now(), 'cdn:not-ready');
        this.cdn(context, config, callbacks);
        return;
      }
      var self = this, stats = this.stats, t0 = performance.now(), settled = false;
      stats.loading.start = t0;
      var dl = deadline(hls.media, frag.start);
      var pending = load(hls.url, context.url, hls.media, frag.start, range, frag.duration);
      this.pending = pending;
      // Whatever happens inside the agent, the player gets its segment: if
      // the agent has not answered when only the CDN reserve is left, the
      // player loads it from the CDN too, and the first to finish serves
      // it. (The agent is often under way on the CDN by then, since its
      // deadline comes first: giving its load up and starting over made a
      // viewer on a slow CDN stall.)
      var racing = false;
      var guard = setTimeout(function () {
        if (settled || self.aborted) return;
        racing = true;
        trace(context.url, t0, 'cdn:guard');
        self.cdn(context, config, callbacks);
      }, guardMs(dl));
      pending.then(function (res) {
        clearTimeout(guard);
        if (self.aborted || settled || self.delivered) return;
        settled = true;
        if (racing) {
          // The agent came first: the player's own load ends, unheard.
          self.agentWon = true;
          self.inner.abort();
          stats.aborted = false;
          trace(context.url, t0, 'agent:won-race');
        }
        // hls.js's ABR is told what the CDN took, or would take, for these
        // bytes (agent.Result.ABR): never the wait for a peer, which it
        // would count against the network, nor a peer's speed, since the
        // CDN is what every segment falls back to.
        var t = abrTiming(res), now = performance.now();
        stats.loading.end = now;
        stats.loading.first = now - t.transferMs;
        stats.loading.start = stats.loading.first - t.firstByteMs;
        stats.loaded = stats.total = res.data.byteLength;
        if (opts.verify) verify(context.url, res, range);
        trace(context.url, t0, 'agent:' + res.source + (res.why ? ':' + res.why : '') + (dl ? '' : ':now'));
        self.delivered = true;
        callbacks.onSuccess({ url: context.url, data: res.data.buffer }, stats, context, null);
      }, function () {
        clearTimeout(guard);
        if (self.aborted || settled || racing) return;
        settled = true;
        trace(context.url, t0, 'cdn:agent-error');
        emit('segment-error', { url: context.url, reason: 'agent' });
        self.cdn(context, config, callbacks); // the CDN, as if peercdn were not there
      });
    };
    // cdn loads with hls.js's own loader, counting the bytes in stats().
    PeerLoader.prototype.cdn = function (context, config, callbacks) {
      // hls.js made frag.stats this very object, and its own loaders refuse
      // a second load once loading.start is set ("Loader can only be used
      // once"): after an agent attempt, clear it so the CDN load can start
      // and time itself.
      this.inner.stats.loading.start = 0;
      var onSuccess = callbacks.onSuccess, self = this;
      var counted = Object.assign({}, callbacks, {
        onAbort: function () {
          if (self.agentWon) return; // the agent's copy was delivered instead
          if (callbacks.onAbort) callbacks.onAbort.apply(null, arguments);
        },
        onSuccess: function (response, stats, ctx, net) {
          if (self.delivered) return;
          self.delivered = true;
          if (response.data && response.data.byteLength) playerCDN(ctx.url, response.data.byteLength);
          var r = hlsRange(ctx);
          if (ctx.frag && ctx.frag.sn !== 'initSegment' && r !== null) {
            var l = stats && stats.loading;
            handOver(hls.url, ctx.url, response.data, l && l.end > l.start ? { firstByteMs: Math.max(0, l.first - l.start), totalMs: l.end - l.start } : null, r);
          }
          onSuccess(response, stats, ctx, net);
        },
      });
      this.inner.load(context, config, counted);
      this.stats = this.inner.stats;
    };
    // An abort (a seek, a quality switch) ends the agent's load too. Once
    // the player has its bytes, hls.js destroys the loader: an agent load
    // still running then (the player fell back to the CDN meanwhile) goes
    // on, since the browser joins the two CDN requests into one and the
    // agent's copy serves the swarm; cancelled, its bytes were lost.
    PeerLoader.prototype.abort = function () {
      if (!this.aborted && !this.delivered && this.context) emit('segment-abort', { url: this.context.url });
      this.aborted = true;
      if (this.pending) this.pending.cancel();
      this.inner.abort();
    };
    PeerLoader.prototype.destroy = function () {
      this.aborted = true;
      if (this.pending && !this.delivered) this.pending.cancel();
      this.inner.destroy();
    };
    PeerLoader.prototype.getCacheAge = function () { return null; };
    PeerLoader.prototype.getResponseHeader = function () { return null; };
    // hlsRange is an EXT-X-BYTERANGE fragment's range (hls.js's rangeEnd
    // is exclusive), '' for a whole file, null for what the agent does
    // not take.
    function hlsRange(context) {
      var a = context.rangeStart, b = context.rangeEnd;
      if (!(a > 0) && !(b > 0)) return '';
      return b > a ? closedRange(a + '-' + (b - 1)) : null;
    }
    hls.config.fLoader = PeerLoader;
    if (hls.media) watchStalls(hls.media);
    hls.on('hlsMediaAttached', function (_, data) { watchStalls(data && data.media); });
    return hls;
  }

  // shaka routes a Shaka Player's segment requests through the agent.
  // lib is the shaka-player module; a page with the script build of
  // Shaka may leave it out (window.shaka).
  function shakaPlayer(player, lib) {
    var sh = lib || (typeof window !== 'undefined' && window.shaka);
    if (!sh || !sh.net || !sh.net.NetworkingEngine) {
      throw new TypeError('peercdn.shaka(player, shaka): pass the shaka-player module (import shaka from "shaka-player")');
    }
    playerAttached();
    var NE = sh.net.NetworkingEngine;
    // Scheme plugins are not told which segment a request is for; request
    // filters are: the segment's time rides on the request.
    var ne = player.getNetworkingEngine && player.getNetworkingEngine();
    if (ne && ne.registerRequestFilter) {
      ne.registerRequestFilter(function (type, request, context) {
        var seg = context && context.segment;
        if (seg && typeof seg.getStartTime === 'function') request.peercdnStart = seg.getStartTime();
      });
    }
    function startOf(request) {
      if (typeof request.peercdnStart === 'number') return request.peercdnStart;
      var seg = request.segment;
      return seg && typeof seg.getStartTime === 'function' ? seg.getStartTime() : undefined;
    }
    var plugin = function (uri, request, type, progress, headers, config) {
      var start0 = startOf(request);
      if (type === NE.RequestType.SEGMENT && typeof start0 === 'number') {
        noteStart(player.getMediaElement(), start0);
        var wait = holdMs(player.getMediaElement(), start0);
        if (wait > 0) {
          var inner = null, gone = false;
          trace(uri, performance.now(), 'held');
          var p = whenUsable(wait).then(function () {
            if (gone) throw new sh.util.Error(sh.util.Error.Severity.RECOVERABLE, sh.util.Error.Category.NETWORK, sh.util.Error.Code.OPERATION_ABORTED);
            inner = route(uri, request, type, progress, headers, config);
            return inner.promise;
          });
          return new sh.util.AbortableOperation(p, function () { gone = true; return inner ? inner.abort() : Promise.resolve(); });
        }
      }
      return route(uri, request, type, progress, headers, config);
    };
    var route = function (uri, request, type, progress, headers, config) {
      if (type === NE.RequestType.SEGMENT) watchStalls(player.getMediaElement()); // its first 'playing' starts the agent
      // A segment that is a byte range of a file (DASH SegmentBase and
      // SegmentList, HLS byte ranges) is named by its URL and range.
      var range = closedRange(request.headers && (request.headers.Range || request.headers.range));
      if (!usable() || type !== NE.RequestType.SEGMENT || range === null) {
        if (type === NE.RequestType.SEGMENT) trace(uri, performance.now(), 'cdn:not-ready');
        var op = sh.net.HttpFetchPlugin.parse(uri, request, type, progress, headers, config);
        if (type === NE.RequestType.SEGMENT) {
          op.promise.then(function (r) {
            if (!r || !r.data) return;
            playerCDN(uri, r.data.byteLength);
            if (range !== null) handOver(player.getAssetUri ? player.getAssetUri() : '', uri, r.data, r.timeMs > 0 ? { firstByteMs: 0, totalMs: r.timeMs } : null, range);
          }, function () {});
        }
        return op;
      }
      var t0 = performance.now(), aborted = false;
      var start = startOf(request);
      var media = player.getMediaElement();
      var seg = request.segment;
      var dur = seg && typeof seg.getEndTime === 'function' && typeof start === 'number' ? seg.getEndTime() - start : 0;
      var pending = load(player.getAssetUri ? player.getAssetUri() : '', uri, media, start, range, dur);
      var dl0 = deadline(media, start);
      var agentLoad = pending.then(function (res) {
        if (opts.verify) verify(uri, res, range);
        trace(uri, t0, 'agent:' + res.source + (res.why ? ':' + res.why : '') + (dl0 ? '' : ':now'));
        var t = abrTiming(res); // what Shaka's bandwidth estimate is told (see hlsjs)
        return { uri: uri, originalUri: uri, data: res.data.buffer, headers: {}, timeMs: t.firstByteMs + t.transferMs, fromCache: false };
      });
      var guard;
      var late = new Promise(function (_, reject) {
        guard = setTimeout(function () { reject(new Error('agent too slow')); }, guardMs(dl0));
      });
      var p = Promise.race([agentLoad, late]).then(function (r) { clearTimeout(guard); return r; }, function () {
        clearTimeout(guard);
        if (aborted) throw new sh.util.Error(sh.util.Error.Severity.RECOVERABLE, sh.util.Error.Category.NETWORK, sh.util.Error.Code.OPERATION_ABORTED);
        // The CDN, and the agent's load goes on: the first to finish
        // serves the segment (see hlsjs).
        var op = sh.net.HttpFetchPlugin.parse(uri, request, type, progress, headers, config);
        var cdnLoad = op.promise.then(function (r) {
          if (r && r.data) playerCDN(uri, r.data.byteLength); // count the CDN bytes in stats() and reports
          if (r && r.data) handOver(player.getAssetUri ? player.getAssetUri() : '', uri, r.data, r.timeMs > 0 ? { firstByteMs: 0, totalMs: r.timeMs } : null, range);
          return r;
        });
        var agentWins = agentLoad.then(function (r) { op.abort(); return r; }, function () { return new Promise(function () {}); });
        return Promise.race([agentWins, cdnLoad]);
      });
      return new sh.util.AbortableOperation(p, function () { aborted = true; emit('segment-abort', { url: uri }); pending.cancel(); return Promise.resolve(); });
    };
    NE.registerScheme('http', plugin, NE.PluginPriority.APPLICATION);
    NE.registerScheme('https', plugin, NE.PluginPriority.APPLICATION);
    return player;
  }

  // dashjs routes a dash.js MediaPlayer's segment requests (media and
  // init, whole or byte ranges) through the agent. dash.js's extension
  // point is its loader, replaced with MediaPlayer.extend: call this after
  // dashjs.MediaPlayer().create() and before player.initialize().
  function dashjsPlayer(player) {
    if (!player || typeof player.extend !== 'function' || typeof player.initialize !== 'function') {
      throw new TypeError('peercdn.dashjs(player): pass a dash.js MediaPlayer, before player.initialize()');
    }
    playerAttached();
    function manifestURL() {
      var s = player.getSource && player.getSource();
      return typeof s === 'string' ? s : '';
    }
    function media() {
      try { return player.getVideoElement(); } catch (e) { return null; }
    }
    player.extend('XHRLoader', function () {
      // dash.js overwrites the parent's methods with these once this
      // returns: keep its own.
      var parentLoad = this.parent.load, parentXhr = this.parent.getXhr;
      // cdn loads with dash.js's own XHR, counting and sharing the bytes,
      // and returns a function that stops that XHR. skip() is true once
      // the agent's copy was delivered instead: the XHR's events are then
      // not dash.js's any more. (The XHR loader is one object for many
      // requests: its own abort() stops the latest, not necessarily this.)
      // range is null for what is not shared (neither counted, unless
      // count: an index segment is media bytes too).
      function cdn(req, resp, range, skip, count) {
        var cd = req.customData, end = cd.onloadend, onabort = cd.onabort, onprogress = cd.onprogress;
        var t0 = performance.now(), first = 0;
        cd.onprogress = function () { if (!first) first = performance.now(); if (!skip() && onprogress) return onprogress.apply(this, arguments); };
        cd.onabort = function () { if (!skip() && onabort) return onabort.apply(this, arguments); };
        cd.onloadend = function () {
          if (skip()) return;
          var ok = resp.status >= 200 && resp.status < 300 && resp.data && resp.data.byteLength;
          if (ok && (range !== null || count)) playerCDN(req.url, resp.data.byteLength);
          if (ok) {
            if (range !== null) {
              var now = performance.now();
              handOver(manifestURL(), req.url, resp.data, { firstByteMs: Math.max(0, (first || now) - t0), totalMs: now - t0 }, range);
            }
          }
          if (end) return end.apply(this, arguments);
        };
        parentLoad(req, resp);
        var x = parentXhr && parentXhr();
        return function () {
          if (!x) return;
          x.onloadend = x.onerror = x.onprogress = x.onload = x.onabort = x.ontimeout = null;
          x.abort();
          x = null;
        };
      }
      function load(req, resp) {
        var cd = req.customData || {}, ro = cd.request || {};
        var segment = ro.type === 'MediaSegment' || ro.type === 'InitializationSegment';
        var range = closedRange(ro.range);
        var stopCDN = null;
        if (ro.type === 'MediaSegment' && typeof ro.startTime === 'number' && !cd.peercdnHeld) {
          noteStart(media(), ro.startTime);
          var wait = holdMs(media(), ro.startTime);
          if (wait > 0) {
            var gone = false;
            cd.peercdnHeld = true;
            trace(req.url, performance.now(), 'held');
            cd.abort = function () { gone = true; if (cd.onabort) cd.onabort(); };
            whenUsable(wait).then(function () { if (!gone) load(req, resp); });
            return true;
          }
        }
        if (!usable() || !segment || req.method !== 'GET' || range === null) {
          stopCDN = cdn(req, resp, segment ? range : null, function () { return false; }, ro.type === 'IndexSegment');
          cd.abort = function () { stopCDN(); if (cd.onabort) cd.onabort(); };
          return true;
        }
        watchStalls(media());
        var onprogress = cd.onprogress, onloadend = cd.onloadend; // dash.js's, before cdn() wraps them
        var t0 = performance.now(), settled = false, delivered = false, aborted = false, racing = false;
        var start = typeof ro.startTime === 'number' && isFinite(ro.startTime) ? ro.startTime : undefined;
        var dl = deadline(media(), start);
        var pending = agentLoad(manifestURL(), req.url, media(), start, range, ro.duration);
        function agentDelivered() { return delivered; }
        var guard = setTimeout(function () {
          if (settled || aborted) return;
          racing = true; // the CDN too; the first to finish serves it (see hlsjs)
          trace(req.url, t0, 'cdn:guard');
          stopCDN = cdn(req, resp, range, agentDelivered);
        }, guardMs(dl));
        // dash.js aborts by muting onloadend and onprogress, then calling
        // customData.abort(), and expects onabort.
        cd.abort = function () {
          if (aborted) return;
          aborted = true;
          clearTimeout(guard);
          if (!delivered) { emit('segment-abort', { url: req.url }); pending.cancel(); }
          if (stopCDN) stopCDN();
          if (cd.onabort) cd.onabort();
        };
        pending.then(function (res) {
          clearTimeout(guard);
          if (aborted || settled || resp.status) return; // the CDN's copy came first
          settled = delivered = true;
          if (stopCDN) stopCDN();
          // dash.js's throughput estimate reads the progress traces: the
          // first holds the time to first byte, the rest the transfer. It
          // is told what the CDN took, or would take, for these bytes
          // (abrTiming, as for hls.js).
          var t = abrTiming(res), n = res.data.byteLength;
          resp.url = req.url;
          resp.status = 200;
          resp.statusText = 'OK';
          resp.headers = {};
          resp.data = res.data.buffer.byteLength === n ? res.data.buffer : res.data.slice().buffer;
          if (opts.verify) verify(req.url, res, range);
          trace(req.url, t0, 'agent:' + res.source + (res.why ? ':' + res.why : '') + (dl ? '' : ':now'));
          if (onprogress) {
            onprogress({ lengthComputable: true, loaded: Math.min(1, n), total: n, time: t.firstByteMs });
            onprogress({ lengthComputable: true, loaded: n, total: n, time: t.transferMs });
          }
          if (onloadend) onloadend();
        }, function () {
          clearTimeout(guard);
          if (aborted || settled || racing) return;
          settled = true;
          trace(req.url, t0, 'cdn:agent-error');
          emit('segment-error', { url: req.url, reason: 'agent' });
          stopCDN = cdn(req, resp, range, function () { return false; });
        });
        return true;
      }
      return { load: load };
    }, true);
    return player;
  }

  var api = {
    version: 1, // the API's version
    release: RELEASE, // the build: the agent's file, or the package version
    ready: ready,
    // configure sets options; a running agent takes upload,
    // uploadBytesPerSecond, maxPeers, maxWaitMs and cdnSafetyMs at once
    // (the others apply at start). It throws on a value the agent refuses.
    configure: function (o) {
      Object.assign(opts, o);
      if (!usable() || !window.__peercdn.configure) return;
      var live = {};
      ['uploadBytesPerSecond', 'maxPeers', 'maxWaitMs', 'cdnSafetyMs'].forEach(function (k) { if (k in o) live[k] = o[k]; });
      if ('upload' in o || 'metered' in o || 'hiddenTab' in o) { lastUpload = uploading(); live.upload = lastUpload; }
      var err = window.__peercdn.configure(JSON.stringify(live));
      if (err) throw new Error('peercdn.configure: ' + err);
    },
    hlsjs: hlsjs,
    shaka: shakaPlayer,
    dashjs: dashjsPlayer,
    // stats sums the page's players: {cdnBytes, p2pBytes, uploadBytes, peers, ...};
    // control is true while the tracker's rollout keeps this viewer on the CDN only.
    stats: function () {
      // After destroy the agent's last figures stay (it keeps them).
      var s = state.ready ? JSON.parse(window.__peercdn.stats()) : {};
      var out = Object.assign({ cdnBytes: 0, p2pBytes: 0, uploadBytes: 0, peers: 0 }, s);
      out.cdnBytes += state.cdnFallback.cdnBytes; // segments loaded before the agent was ready
      out.ready = state.ready;
      out.error = state.failed ? state.failed.message : null;
      return out;
    },
    // on(kind, fn): see peercdn.d.ts for the kinds and what each carries.
    on: function (kind, fn) { (state.listeners[kind] = state.listeners[kind] || []).push(fn); },
    off: function (kind, fn) { state.listeners[kind] = (state.listeners[kind] || []).filter(function (f) { return f !== fn; }); },
    // destroy releases every peer connection; players keep going on the CDN.
    destroy: function () {
      state.destroyed = true;
      state.grant(); // a pending consent ends too
      kick();
      return ready.then(function () { return window.__peercdn && window.__peercdn.destroy(); });
    },
    // consent(true) starts peer-to-peer delivery when the page was loaded
    // with {consent: true}; consent(false) stops it for good (as destroy).
    consent: function (yes) {
      if (yes) { kick(); state.grant(); return ready; }
      return api.destroy();
    },
  };
  return api;
};
//@script-tag: the build for a <script> tag ends here; the ES module build
// replaces what follows with its exports.
(function () {
  if (window.peercdn && window.peercdn.version) return;
  window.peercdn = peercdnFactory({ script: document.currentScript });
})();
