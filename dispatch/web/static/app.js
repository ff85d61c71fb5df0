// The dispatch live page. It keeps its own copy of the heroes and of the
// cluster status, applies the server's snapshot, deltas and cluster frames
// to it, and sends commands over the same WebSocket. No framework, no
// build step, nothing loaded from elsewhere.
//
// Every event in the feed is derived from what the server sends anyway:
// hero events from the difference between a hero's previous and new entry
// in a delta, city events from the difference between two cluster frames.
//
// Frames may bring entries out of stamp order (dispatch publishes changes
// as its replica takes them), so entries are applied by the rule replicas
// merge by (see wins): an entry that does not win against what the page
// holds for its id, a tombstone included, is ignored and makes no event.
//
// The hero table is windowed: the model (model, applyEntries,
// startSnapshot) holds every live hero in row order and knows nothing of
// the DOM; the view (view, renderWindow) keeps in the table only the rows
// in sight, plus OVERSCAN above and below, with two spacer rows standing
// for the others. A frame touching one hero touches at most one row, and a
// snapshot of 10,000 heroes is indexed in slices of BUILD_STEP_MS and then
// shown by building a window of rows; it comes in parts of a few hundred
// heroes, each parsed and handed over in a task of its own. window.__perf reports
// how long applying each frame took (performance.now()) and how big it
// was, window.__view what the table holds, for the browser test, and the
// marks snapshot-frame and snapshot-shown (performance.mark) frame a
// snapshot's arrival and its table shown, for traces.
'use strict';

(() => {
  const $ = (sel) => document.querySelector(sel);
  const el = {
    conn: $('#conn'),
    sync: $('#sync'),
    cities: $('#cities'),
    tbody: $('#heroes tbody'),
    table: $('#heroes'),
    empty: $('#empty'),
    noMatch: $('#no-match'),
    count: $('#hero-count'),
    flash: $('#flash'),
    log: $('#log'),
    createForm: $('#create-form'),
    createName: $('#create-name'),
    create: $('#create'),
    bombForm: $('#bomb-form'),
    bombCity: $('#bomb-city'),
    bomb: $('#bomb'),
    filters: $('#filters'),
    filterName: $('#filter-name'),
    filterCity: $('#filter-city'),
  };

  const state = {
    tombs: new Map(),    // id -> {h, until}: tombstones seen, oldest first (see bury)
    tombstoneMs: 10 * 60 * 1000, // how long to remember a tombstone; each snapshot says
    cities: new Map(),   // name -> city view (see cityView)
    cluster: { cities: [], in_sync: false },
    catchingUp: false,   // dispatch restarted and has not read a city yet
    locations: ['home'], // home and every known city: the assign choices
    locationsKey: 'home', // locations joined by newlines
    filter: { name: '', city: '' },
    loaded: false,       // a snapshot was applied
    ws: null,
    attempt: 0,
    nextRef: 1,
    pending: new Map(),  // ref -> {resolve, reject, timer}
  };

  const BUILD_STEP_MS = 8;   // longest slice of indexing a snapshot
  const FEW = 16;            // new heroes inserted one by one; more are sorted and merged
  const OVERSCAN = 8;        // rows kept in the table above and below the ones in sight
  const PITCH_GUESS = 45;    // px per row until a row is measured
  const LOG_MAX = 200;       // feed entries kept
  const EVENTS_PER_FRAME = 12; // feed entries one frame may add; the rest are summed up
  const FLASH_MS = 8000;
  const ERROR_MS = 12000;
  const REPLY_MS = 10000;
  const SAMPLE_MS = 500;     // lag chart: one sample every SAMPLE_MS
  const SAMPLES = 60;        // lag chart: samples kept (30 s)
  const CHART_W = 120;
  const CHART_H = 28;

  // ---- measurements for the browser test ----

  const perf = {
    snapshots: 0,         // snapshots applied (not reset)
    frames: 0,            // frames applied
    lastApplyMs: 0,       // parse + apply of the latest frame other than the snapshot
    maxApplyMs: 0,        // the maximum of lastApplyMs since the last reset
    snapshotApplyMs: 0,   // parse of the latest snapshot's frames and hand-over to the model, summed over its parts; indexing goes on after it
    snapshotHeroes: 0,
    snapshotBytes: 0,
    snapshotAt: 0,        // performance.now() when the latest snapshot came
    snapshotDoneAt: 0,    // ... and when its table was shown
    snapshotReadyMs: 0,   // from the snapshot's arrival to its table shown
    snapshotSteps: 0,     // slices the latest snapshot was indexed in
    maxBuildStepMs: 0,    // the longest slice indexing a snapshot, the table's window included
    lastRenderMs: 0,      // style, layout and paint after the latest delta (see measureRender)
    maxRenderMs: 0,
    renders: 0,
    lastFrameBytes: 0,    // UTF-8 size of the latest frame
    lastFrameType: '',
    lastFrameHeroes: 0,   // heroes in the latest frame (delta or snapshot)
    deltas: [],           // the latest delta frames: {heroes, bytes, ms, id}
    applyMs: [],          // the apply times of the latest frames other than snapshots
    reset() {
      this.frames = 0;
      this.lastApplyMs = 0;
      this.maxApplyMs = 0;
      this.maxBuildStepMs = 0;
      this.maxRenderMs = 0;
      this.renders = 0;
      this.deltas = [];
      this.applyMs = [];
    },
  };
  window.__perf = perf;

  // measureRender estimates how long the browser took to render the
  // frame after a delta: from the animation frame callback (before style
  // and layout) to a task queued from it (after paint).
  let renderPending = false;
  function measureRender() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(() => {
      const t = performance.now();
      setTimeout(() => {
        renderPending = false;
        const ms = performance.now() - t;
        perf.lastRenderMs = ms;
        perf.maxRenderMs = Math.max(perf.maxRenderMs, ms);
        perf.renders++;
      });
    });
  }

  // mark sets a performance mark, keeping only the latest of each name.
  function mark(name) {
    performance.clearMarks(name);
    performance.mark(name);
  }

  function utf8Length(s) {
    let n = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x80) n += 1;
      else if (c < 0x800) n += 2;
      else if (c >= 0xd800 && c < 0xdc00) { n += 4; i++; } // surrogate pair
      else n += 3;
    }
    return n;
  }

  let snapshotIn = { ms: 0, bytes: 0, heroes: 0 }; // the snapshot being received, so far

  function record(msg, data, ms) {
    perf.frames++;
    perf.lastFrameType = msg.type;
    perf.lastFrameBytes = utf8Length(data);
    perf.lastFrameHeroes = Array.isArray(msg.heroes) ? msg.heroes.length : 0;
    if (msg.type === 'snapshot' || msg.type === 'snapshot_part') {
      // A snapshot's figures sum its frames, and count once it is applied.
      if (msg.type === 'snapshot') snapshotIn = { ms: 0, bytes: 0, heroes: msg.count || 0 };
      snapshotIn.ms += ms;
      snapshotIn.bytes += perf.lastFrameBytes;
      if (assembling === null) {
        perf.snapshots++;
        perf.snapshotApplyMs = snapshotIn.ms;
        perf.snapshotHeroes = snapshotIn.heroes;
        perf.snapshotBytes = snapshotIn.bytes;
      }
      return;
    }
    perf.lastApplyMs = ms;
    perf.maxApplyMs = Math.max(perf.maxApplyMs, ms);
    perf.applyMs.push(ms);
    if (perf.applyMs.length > 256) perf.applyMs.shift();
    if (msg.type === 'delta') {
      perf.deltas.push({ heroes: perf.lastFrameHeroes, bytes: perf.lastFrameBytes, ms, id: msg.heroes[0] ? msg.heroes[0].id : '' });
      if (perf.deltas.length > 64) perf.deltas.shift();
    }
  }

  // ---- connection ----

  function connect() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/ws`);
    } catch (err) {
      scheduleReconnect(`cannot connect: ${err.message}`);
      return;
    }
    state.ws = ws;
    setConn('connecting', 'connecting…');
    ws.addEventListener('open', () => setConn('open', 'live'));
    ws.addEventListener('message', (e) => receive(e.data));
    ws.addEventListener('close', (e) => {
      if (state.ws !== ws) return;
      state.ws = null;
      assembling = null;
      for (const [ref, p] of state.pending) {
        clearTimeout(p.timer);
        p.reject(new CommandError('the connection to dispatch was lost', 0));
        state.pending.delete(ref);
      }
      scheduleReconnect(`disconnected${e.code ? ` (${e.code})` : ''}`);
    });
  }

  // receive handles a frame, in the order frames came. A snapshot comes
  // in parts of a few hundred heroes each (see onSnapshotFrame), so no
  // frame holds the main thread for long.
  function receive(data) {
    if (isSnapshot(data)) mark('snapshot-frame');
    const t0 = performance.now();
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    handle(msg);
    record(msg, data, performance.now() - t0);
    if (msg.type === 'delta') measureRender();
  }

  function isSnapshot(data) {
    return typeof data === 'string' && data.startsWith('{"type":"snapshot",'); // not a snapshot_part
  }

  function scheduleReconnect(why) {
    const base = Math.min(10000, 500 * 2 ** state.attempt);
    state.attempt++;
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    setConn('closed', `${why}; retrying in ${Math.max(1, Math.round(delay / 1000))} s`);
    logEvent('connection', `${why}; reconnecting`);
    setTimeout(connect, delay);
  }

  function setConn(s, text) {
    el.conn.dataset.state = s;
    el.conn.textContent = text;
    document.body.dataset.conn = s;
    const live = s === 'open';
    el.create.disabled = !live;
    el.bomb.disabled = !live;
  }

  function connected() {
    return !!state.ws && state.ws.readyState === WebSocket.OPEN;
  }

  class CommandError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  // send sends a command and resolves with the server's "ok" reply, or
  // rejects with a CommandError carrying the HTTP-like status (0 when the
  // command never got an answer).
  function send(cmd) {
    if (!connected()) {
      return Promise.reject(new CommandError('not connected to dispatch; reconnecting', 0));
    }
    const ref = state.nextRef++;
    state.ws.send(JSON.stringify({ ...cmd, ref }));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        state.pending.delete(ref);
        reject(new CommandError(`dispatch did not answer within ${REPLY_MS / 1000} s`, 0));
      }, REPLY_MS);
      state.pending.set(ref, { resolve, reject, timer });
    });
  }

  function handle(msg) {
    switch (msg.type) {
      case 'snapshot': return onSnapshotFrame(msg);
      case 'snapshot_part': return onSnapshotPart(msg);
      case 'delta': return onDelta(msg.heroes || []);
      case 'cluster': return onCluster(msg.cluster);
      case 'flash': return showFlash(msg.message, 'flash');
      case 'ok':
      case 'error': {
        const p = state.pending.get(msg.ref);
        if (!p) return;
        state.pending.delete(msg.ref);
        clearTimeout(p.timer);
        if (msg.type === 'ok') p.resolve(msg);
        else p.reject(new CommandError(String(msg.error || `error ${msg.status}`).replace(/^dispatch: /, ''), msg.status || 0));
        return;
      }
    }
  }

  // A snapshot comes in pieces: a "snapshot" frame (the cluster status,
  // tombstone_ttl_ms, parts, count), then its heroes in "parts"
  // snapshot_part frames, nothing in between. Each part goes to the model
  // as it comes (indexed in slices, see startSnapshot); the table switches
  // to the new heroes once the last part is indexed, and deltas wait until
  // then. A part out of order means the feed broke: the page drops the
  // partial snapshot and connects again.
  let assembling = null; // {snap, next, parts}: the snapshot being received
  function onSnapshotFrame(msg, arrived) {
    const snap = beginSnapshot(msg, arrived);
    snap.add(msg.heroes || []); // a snapshot in one frame has them here
    if (msg.parts > 0) {
      assembling = { snap, next: 1, parts: msg.parts };
      return;
    }
    assembling = null;
    snap.finish();
  }

  function onSnapshotPart(msg) {
    if (!assembling || msg.part !== assembling.next) {
      assembling = null;
      abandonSnapshot();
      if (state.ws) state.ws.close(4000, 'snapshot part out of order');
      return;
    }
    assembling.snap.add(msg.heroes || []);
    assembling.next++;
    if (assembling.next > assembling.parts) {
      const { snap } = assembling;
      assembling = null;
      snap.finish();
    }
  }

  // ---- heroes: from frames to the model ----

  // beginSnapshot applies what a snapshot frame holds besides its heroes,
  // and returns the snapshot to add them to. arrived is when the frame
  // came (performance.now()), if not now.
  function beginSnapshot(msg, arrived = performance.now()) {
    if (msg.tombstone_ttl_ms > 0) state.tombstoneMs = msg.tombstone_ttl_ms;
    onCluster(msg.cluster || { cities: [], in_sync: false }, true);
    return startSnapshot((n) => {
      state.attempt = 0; // reconnects back off again only once a snapshot is shown
      state.loaded = true;
      renderCounts();
      logEvent('connection', `connected: ${n} superhero${n === 1 ? '' : 'es'}`);
    }, arrived);
  }

  // onDelta applies a delta's entries, or holds them while a snapshot is
  // being indexed: they are applied, in order, once it is shown.
  function onDelta(heroes) {
    if (model.build) {
      for (const h of heroes) model.held.push(h);
      return;
    }
    const events = [];
    applyEntries(heroes, events);
    renderWindow();
    renderCounts();
    publish(events);
  }

  // ---- the merge rule ----

  // wins reports whether entry a supersedes entry b, two entries for the
  // same id, as replicas decide it (crdt.Hero.wins): a tombstone beats any
  // live entry; otherwise the later stamp wins; equal stamps (a node that
  // reused its clock after a crash) fall back to comparing content.
  // Identical entries win neither way.
  function wins(a, b) {
    if (a.dead !== b.dead) return a.dead;
    const c = compareStamps(a.stamp, b.stamp);
    if (c !== 0) return c > 0;
    return compareContent(a, b) > 0;
  }

  // compareStamps orders two stamps as crdt.Timestamp.Compare does: by
  // wall, logical, then node. The wall is nanoseconds as a decimal string
  // (a number would lose precision; see wire.go), in Go's canonical form,
  // so it compares by sign, length, then characters, without parsing.
  function compareStamps(a, b) {
    if (a.wall !== b.wall) {
      const an = a.wall.charCodeAt(0) === 45; // '-'
      const bn = b.wall.charCodeAt(0) === 45;
      if (an !== bn) return an ? -1 : 1;
      let c;
      if (a.wall.length !== b.wall.length) c = a.wall.length < b.wall.length ? -1 : 1;
      else c = a.wall < b.wall ? -1 : 1;
      return an ? -c : c;
    }
    if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1;
    return compareStrings(a.node, b.node);
  }

  function compareContent(a, b) {
    return compareStrings(a.name, b.name) ||
      compareStrings(a.location, b.location) ||
      (a.health !== b.health ? (a.health < b.health ? -1 : 1) : 0) ||
      (a.is_patrolling !== b.is_patrolling ? (a.is_patrolling ? 1 : -1) : 0);
  }

  // compareStrings compares UTF-16 code units where Go compares UTF-8
  // bytes; they differ only between characters from U+E000 and beyond the
  // BMP, which matters only for equal stamps.
  function compareStrings(a, b) {
    return a === b ? 0 : a < b ? -1 : 1;
  }

  function tombOf(id) {
    const t = state.tombs.get(id);
    return t && t.h;
  }

  // bury remembers a tombstone for as long as replicas keep one
  // (tombstone_ttl_ms, counted from now, which is later than its stamp),
  // so that no stale live entry, in a delta or a later snapshot, brings
  // the hero back. Deleting first keeps the map in expiry order.
  function bury(h) {
    state.tombs.delete(h.id);
    state.tombs.set(h.id, { h, until: performance.now() + state.tombstoneMs });
  }

  // pruneTombs forgets expired tombstones; it stops at the first that is
  // not, so it costs one step plus one per tombstone dropped.
  function pruneTombs(now) {
    for (const [id, t] of state.tombs) {
      if (t.until > now) return;
      state.tombs.delete(id);
    }
  }

  // heroEvents appends the feed events that the change from prev to h
  // means. A city's tombstone is a death in a fight, dispatch's a
  // termination; a health drop of a live hero is a fight; a rise in
  // health or a change of place is an assignment (only an assignment
  // heals).
  function heroEvents(prev, h, out) {
    if (h.dead) {
      if (!prev) return;
      if (h.updated_by === 'dispatch') {
        out.push({ kind: 'terminated', text: `${prev.name} was terminated` });
      } else {
        out.push({ kind: 'died', text: `${prev.name} died fighting in ${prev.location} (−${prev.health})`, damage: prev.health, city: prev.location });
      }
      return;
    }
    if (!prev) {
      out.push({ kind: 'created', text: `${h.name} was created at ${h.location}` });
      return;
    }
    if (prev.location !== h.location || h.health > prev.health) {
      const healed = h.health > prev.health ? `, healed to ${h.health}` : '';
      out.push({ kind: 'assigned', text: `${h.name} was assigned to ${h.location}${healed}`, city: h.location });
    }
    if (!prev.is_patrolling && h.is_patrolling) {
      out.push({ kind: 'patrolling', text: `${h.name} is patrolling ${h.location}`, city: h.location });
    }
    if (h.health < prev.health) {
      const dmg = prev.health - h.health;
      out.push({ kind: 'fought', text: `${h.name} fought a villain in ${h.location} (−${dmg}, ${h.health} left)`, damage: dmg, city: h.location });
    }
  }
  // ---- the model: the live heroes, in row order ----
  //
  // It knows nothing of the DOM. Every change goes through applyEntries
  // or a snapshot's switch, which tell the view what changed (viewAdded,
  // viewRemoved, viewChanged, viewReplaced).

  const model = {
    heroes: new Map(),  // id -> live hero: the entry that won so far
    order: [],          // ids of the live heroes, sorted by name, then id
    counts: new Map(),  // location -> {heroes, patrolling}, from heroes
    build: null,        // the snapshot being indexed (see startSnapshot)
    held: [],           // delta entries that came while it was, in order
  };

  // applyEntries applies entries by the merge rule, and appends to events
  // the feed events they mean. Heroes new to the page are added together
  // at the end, so that a frame bringing many is merged in one pass.
  function applyEntries(heroes, events) {
    const fresh = new Map(); // id -> live hero new to the page
    for (const h of heroes) {
      const prev = model.heroes.get(h.id) || fresh.get(h.id);
      const held = prev || tombOf(h.id);
      if (held && !wins(h, held)) continue; // stale, or already applied
      heroEvents(prev, h, events);
      if (h.dead) {
        bury(h);
        if (fresh.has(h.id)) fresh.delete(h.id);
        else if (prev) removeHero(prev);
      } else if (model.heroes.has(h.id)) {
        replaceHero(prev, h);
      } else {
        fresh.set(h.id, h);
      }
    }
    addHeroes([...fresh.values()]);
  }

  function addHeroes(hs) {
    if (hs.length === 0) return;
    for (const h of hs) {
      model.heroes.set(h.id, h);
      count(h, 1);
    }
    insertSorted(model.order, hs);
    viewAdded(hs);
  }

  // removeHero removes a hero that died.
  function removeHero(prev) {
    removeId(model.order, prev);
    model.heroes.delete(prev.id);
    count(prev, -1);
    viewRemoved(prev);
  }

  // replaceHero replaces a known live hero; it moves in the order only if
  // its name changed.
  function replaceHero(prev, h) {
    const moved = prev.name !== h.name;
    if (moved) removeId(model.order, prev);
    model.heroes.set(h.id, h);
    if (moved) insertSorted(model.order, [h]);
    count(prev, -1);
    count(h, 1);
    viewChanged(prev, h);
  }

  function compareHeroes(a, b) {
    if (a.name !== b.name) return a.name < b.name ? -1 : 1;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  }

  // lowerBound returns the index in ids (sorted, of heroes in the model)
  // of the first hero not before h.
  function lowerBound(ids, h) {
    let lo = 0;
    let hi = ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const other = model.heroes.get(ids[mid]);
      if (other && compareHeroes(other, h) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  // insertSorted puts the ids of heroes hs, which are in the model, into
  // ids at their places: few by binary search, many by sorting them and
  // merging, in one pass.
  function insertSorted(ids, hs) {
    if (hs.length <= FEW) {
      for (const h of hs) ids.splice(lowerBound(ids, h), 0, h.id);
      return;
    }
    const add = hs.slice().sort(compareHeroes);
    const old = ids.splice(0, ids.length);
    let i = 0;
    let j = 0;
    while (i < old.length || j < add.length) {
      if (j >= add.length || (i < old.length && compareHeroes(model.heroes.get(old[i]), add[j]) < 0)) ids.push(old[i++]);
      else ids.push(add[j++].id);
    }
  }

  // removeId removes h's id from ids, where it sits by h's name.
  function removeId(ids, h) {
    let i = lowerBound(ids, h);
    if (ids[i] !== h.id) i = ids.indexOf(h.id); // the model holds a newer name
    if (i >= 0) ids.splice(i, 1);
  }

  function countIn(counts, h, by) {
    let c = counts.get(h.location);
    if (!c) {
      c = { heroes: 0, patrolling: 0 };
      counts.set(h.location, c);
    }
    c.heroes += by;
    if (h.is_patrolling) c.patrolling += by;
  }

  function count(h, by) {
    countIn(model.counts, h, by);
    const v = state.cities.get(h.location);
    if (v) v.countsDirty = true;
  }

  // startSnapshot begins replacing the model's heroes with a snapshot's,
  // which may come in pieces (add) and is complete at finish(). A hero
  // the page holds a tombstone for stays dead (a tombstone beats any live
  // entry), and an entry the page holds that wins against the snapshot's
  // is kept. A hero missing from the snapshot is dropped but not
  // tombstoned: a restarted dispatch starts empty and is refilled.
  //
  // The pieces are indexed into a new map and order in slices of about
  // BUILD_STEP_MS, each its own task, so the page stays responsive; the
  // table shows the previous heroes until the last piece is indexed, then
  // switches at once, building only the rows in sight. Dispatch sends a
  // snapshot sorted as the table is, so the order is built by appending;
  // one that is not is sorted at the end. done(n) is called once it is
  // shown, with n heroes; began is when the snapshot came, for perf.
  function startSnapshot(done, began = performance.now()) {
    abandonSnapshot(); // a snapshot under way, and the entries held, go first
    const b = {
      pieces: [], piece: 0, at: 0,
      next: new Map(), order: [], counts: new Map(), last: null, sorted: true,
      finished: false, scheduled: false, cancelled: false,
      done, began, steps: 0,
    };
    model.build = b;
    return {
      add(heroes) {
        if (b.cancelled || heroes.length === 0) return;
        b.pieces.push(heroes);
        scheduleBuild(b);
      },
      finish() {
        b.finished = true;
        scheduleBuild(b);
      },
    };
  }

  // abandonSnapshot drops the snapshot being indexed: the model keeps
  // the heroes it had, and the entries held meanwhile are applied.
  function abandonSnapshot() {
    if (!model.build) return;
    model.build.cancelled = true;
    model.build = null;
    const events = [];
    applyHeld(events);
    renderWindow();
    renderCounts();
    publish(events);
  }

  function scheduleBuild(b) {
    if (b.scheduled || b.cancelled) return;
    b.scheduled = true;
    setTimeout(() => buildStep(b));
  }

  // buildStep indexes snapshot entries for about BUILD_STEP_MS, and
  // switches to the new heroes once they are all indexed and no piece is
  // to come.
  function buildStep(b) {
    b.scheduled = false;
    if (b.cancelled) return;
    const t0 = performance.now();
    const old = model.heroes;
    let n = 0;
    let more = false;
    while (b.piece < b.pieces.length) {
      const hs = b.pieces[b.piece];
      while (b.at < hs.length) {
        indexEntry(b, hs[b.at++], old);
        if ((++n & 127) === 0 && performance.now() - t0 > BUILD_STEP_MS) {
          more = true;
          break;
        }
      }
      if (more) break;
      b.pieces[b.piece++] = null;
      b.at = 0;
    }
    b.steps++;
    if (more) scheduleBuild(b);
    else if (b.finished) switchTo(b);
    perf.maxBuildStepMs = Math.max(perf.maxBuildStepMs, performance.now() - t0);
  }

  function indexEntry(b, h, old) {
    if (h.dead || state.tombs.has(h.id)) return;
    const prev = old.get(h.id);
    const e = prev && wins(prev, h) ? prev : h;
    const dup = b.next.get(h.id); // in two pieces
    if (dup) {
      if (!wins(e, dup)) return;
      countIn(b.counts, dup, -1);
      if (dup.name !== e.name) b.sorted = false;
    } else {
      if (b.last && compareHeroes(b.last, e) >= 0) b.sorted = false;
      b.order.push(e.id);
      b.last = e;
    }
    b.next.set(e.id, e);
    countIn(b.counts, e, 1);
  }

  // switchTo makes the indexed snapshot the model, shows it, and applies
  // the entries held meanwhile.
  function switchTo(b) {
    model.build = null;
    if (!b.sorted) {
      const hs = b.order.map((id) => b.next.get(id));
      hs.sort(compareHeroes);
      b.order = hs.map((h) => h.id);
    }
    model.heroes = b.next;
    model.order = b.order;
    model.counts = b.counts;
    for (const v of state.cities.values()) v.countsDirty = true;
    viewReplaced();
    const n = model.heroes.size;
    const events = [];
    applyHeld(events);
    renderWindow();
    b.done(n);
    renderCounts();
    publish(events);
    mark('snapshot-shown');
    perf.snapshotSteps = b.steps;
    perf.snapshotAt = b.began;
    perf.snapshotDoneAt = performance.now();
    perf.snapshotReadyMs = perf.snapshotDoneAt - b.began;
  }

  // applyHeld applies the delta entries held while a snapshot was indexed.
  function applyHeld(events = []) {
    if (model.held.length === 0) return;
    const held = model.held;
    model.held = [];
    applyEntries(held, events);
  }

  // ---- the view: the rows in sight ----
  //
  // The table holds the rows of shown()[start..end): the heroes in sight
  // and OVERSCAN more on each side. Two spacer rows, before and after,
  // are as tall as the rows they stand for, so the page scrolls as if
  // every row were there. Rows are all the same height (pitch), measured
  // from rows in the table. Scrolling and resizing recompute the window
  // in an animation frame; changes to the heroes rebuild it at once.

  const view = {
    filtered: null,     // ids matching the filter, in order; null without a filter
    rows: new Map(),    // id -> row, for the rows in the table
    first: 0,           // the first row the window should hold, from the scroll position
    count: 2 * OVERSCAN + Math.ceil(window.innerHeight / PITCH_GUESS), // rows it holds
    start: 0,           // shown()[start..end) are in the table
    end: 0,
    pitch: PITCH_GUESS, // px from one row's top to the next's
    measured: false,    // pitch comes from rows, not a guess
    dirty: true,        // the window must be rebuilt
    framed: false,      // an animation frame will recompute the window
    isNew: new Set(),   // ids of heroes just created, to highlight if their rows are built now
    ui: new Map(),      // id -> {pick, assigning, terminating}: what a user did to a row, kept when it leaves the table
  };

  // The spacers: hidden while they stand for no row.
  function spacer(cls) {
    const tr = document.createElement('tr');
    tr.className = `spacer ${cls}`;
    tr.setAttribute('aria-hidden', 'true');
    tr.hidden = true;
    const td = document.createElement('td');
    td.colSpan = 6;
    tr.append(td);
    return tr;
  }
  view.top = spacer('spacer-top');
  view.bottom = spacer('spacer-bottom');
  el.tbody.append(view.top, view.bottom);

  function setSpacer(tr, rows) {
    const h = `${Math.round(rows * view.pitch)}px`;
    if (tr.firstChild.style.height !== h) tr.firstChild.style.height = h;
    if (tr.hidden !== (rows === 0)) tr.hidden = rows === 0;
  }

  // shown returns the ids of the heroes the table shows, in order.
  function shown() {
    return view.filtered || model.order;
  }

  function viewAdded(hs) {
    if (view.filtered) {
      const match = hs.filter(matches);
      if (match.length > 0) insertSorted(view.filtered, match);
    }
    if (state.loaded && hs.length <= 4) for (const h of hs) view.isNew.add(h.id);
    view.dirty = true;
  }

  function viewRemoved(prev) {
    view.ui.delete(prev.id);
    if (view.filtered && matches(prev)) removeId(view.filtered, prev);
    view.dirty = true;
  }

  // viewChanged updates a hero's row in place, with a highlight, if it
  // is in the table, and moves the hero in or out of the filtered list.
  function viewChanged(prev, h) {
    if (view.filtered) {
      const was = matches(prev);
      const is = matches(h);
      if (was && (!is || prev.name !== h.name)) removeId(view.filtered, prev);
      if (is && (!was || prev.name !== h.name)) insertSorted(view.filtered, [h]);
      if (was !== is) view.dirty = true;
    }
    if (prev.name !== h.name) view.dirty = true;
    const row = view.rows.get(h.id);
    if (!row) return;
    updateRow(row, h);
    flashRow(row, h.health < prev.health ? 'damage' : h.health > prev.health ? 'heal' : 'update');
  }

  // viewReplaced follows a new snapshot: every row is built again from
  // the new entries.
  function viewReplaced() {
    for (const row of view.rows.values()) row.tr.remove();
    view.rows.clear();
    for (const id of view.ui.keys()) if (!model.heroes.has(id)) view.ui.delete(id);
    refilter();
  }

  function refilter() {
    const f = state.filter;
    view.filtered = f.name || f.city ? model.order.filter((id) => matches(model.heroes.get(id))) : null;
    view.dirty = true;
  }

  // renderWindow makes the table hold the rows of the window, if anything
  // changed: rows that left it are removed, rows that entered it are
  // built, and rows that stay are not touched (a focused drop-down keeps
  // its focus, a highlight goes on).
  function renderWindow() {
    if (!view.dirty) return;
    view.dirty = false;
    const ids = shown();
    const n = ids.length;
    const start = Math.max(0, Math.min(view.first, n - view.count));
    const end = Math.min(n, start + view.count);
    const want = new Set();
    for (let i = start; i < end; i++) want.add(ids[i]);
    for (const [id, row] of view.rows) {
      if (!want.has(id)) {
        row.tr.remove();
        view.rows.delete(id);
      }
    }
    let cursor = view.top.nextSibling;
    for (let i = start; i < end; i++) {
      const id = ids[i];
      let row = view.rows.get(id);
      if (!row) {
        row = newRow(model.heroes.get(id));
        view.rows.set(id, row);
        if (view.isNew.has(id)) flashRow(row, 'new');
      }
      const index = String(i + 2); // the header is row 1
      if (row.tr.getAttribute('aria-rowindex') !== index) row.tr.setAttribute('aria-rowindex', index);
      if (row.tr === cursor) cursor = cursor.nextSibling;
      else el.tbody.insertBefore(row.tr, cursor);
    }
    view.isNew.clear();
    view.start = start;
    view.end = end;
    setSpacer(view.top, start);
    setSpacer(view.bottom, n - end);
    el.table.setAttribute('aria-rowcount', String(n + 1));
    if (!view.measured && end - start >= 2) requestFrame();
  }

  function requestFrame() {
    if (view.framed) return;
    view.framed = true;
    requestAnimationFrame(() => {
      view.framed = false;
      placeWindow();
    });
  }

  // placeWindow recomputes the window from where the table is in the
  // viewport, measuring the rows' pitch first if it is not known, and
  // rebuilds it if it moved. It reads the layout before it writes.
  function placeWindow() {
    // The rows of the latest render, if the table still holds it.
    const a = !view.dirty && view.end - view.start >= 2 && view.rows.get(shown()[view.start]);
    const z = a && view.rows.get(shown()[view.end - 1]);
    if (!view.measured && z) {
      const pitch = (z.tr.getBoundingClientRect().top - a.tr.getBoundingClientRect().top) / (view.end - 1 - view.start);
      view.measured = true; // once: a table that is not laid out keeps the guess
      if (pitch >= 8 && Math.abs(pitch - view.pitch) > 0.01) {
        view.pitch = pitch;
        view.dirty = true;
      }
    }
    const y0 = el.tbody.getBoundingClientRect().top; // where row 0 is (a hidden spacer has no place)
    const first = Math.max(0, Math.floor(-y0 / view.pitch) - OVERSCAN);
    const last = Math.ceil((window.innerHeight - y0) / view.pitch) + OVERSCAN;
    const count = Math.max(last - first, 2 * OVERSCAN);
    if (first !== view.first || count !== view.count) {
      view.first = first;
      view.count = count;
      view.dirty = true;
    }
    renderWindow();
  }

  // reveal scrolls the page so that the hero's row is in sight, and
  // returns whether it is in the table.
  function reveal(id) {
    const i = shown().indexOf(id);
    if (i < 0) return false;
    const y0 = el.tbody.getBoundingClientRect().top;
    window.scrollTo(0, window.scrollY + y0 + i * view.pitch - window.innerHeight / 3);
    placeWindow();
    return view.rows.has(id);
  }

  window.addEventListener('scroll', requestFrame, { passive: true });
  window.addEventListener('resize', () => {
    view.measured = false;
    requestFrame();
  });
  // What is above the table grows and shrinks (flash messages, the feed
  // on narrow screens): the table moves without a scroll.
  const moved = new ResizeObserver(requestFrame);
  for (const e of [el.flash, el.cities, el.log, document.querySelector('.controls')]) moved.observe(e);

  window.__view = {
    total: () => model.heroes.size,        // live heroes
    shown: () => shown().length,           // heroes matching the filter
    has: (id) => model.heroes.has(id),
    rows: () => view.rows.size,            // rows in the table
    window: () => ({ start: view.start, end: view.end, pitch: view.pitch }),
    reveal,
  };

  // ---- rows ----

  // The row template; every row is a clone of it.
  const rowTemplate = (() => {
    const tr = document.createElement('tr');
    tr.innerHTML =
      '<th scope="row" class="name"></th>' +
      '<td class="health" data-label="Health"><meter min="0" max="100" low="34" high="67" optimum="100"></meter> <span class="hp"></span></td>' +
      '<td class="status" data-label="Status"><span class="badge"></span></td>' +
      '<td class="location" data-label="Location"></td>' +
      '<td class="assign"><form class="assign-form"><select class="assign-select" name="location"></select>' +
      '<button type="submit" class="secondary assign-button">Assign</button></form></td>' +
      '<td class="actions"><button type="button" class="danger terminate">Terminate</button></td>';
    return tr;
  })();

  // newRow builds a hero's row, with what a user did to it while it was
  // out of the table (a location picked, a command under way).
  function newRow(h) {
    const tr = rowTemplate.cloneNode(true);
    tr.dataset.heroId = h.id;
    const [name, health, status, loc, assign, actions] = tr.children;
    const row = {
      tr,
      id: h.id,
      name,
      meter: health.firstChild,
      hp: health.lastChild,
      badge: status.firstChild,
      loc,
      sel: assign.firstChild.firstChild,
      go: assign.firstChild.lastChild,
      term: actions.firstChild,
      dirty: false,    // the user picked a location not yet sent
      labelled: '',    // the name the labels were made for
      full: false,     // the drop-down lists every location (see syncOptions)
      optionsKey: '',  // the locations it lists, when full
    };
    const u = view.ui.get(h.id);
    if (u) {
      if (u.pick !== undefined) {
        fillOptions(row, h);
        row.sel.value = u.pick;
        row.dirty = row.sel.value === u.pick;
      }
      row.go.disabled = !!u.assigning;
      row.term.disabled = !!u.terminating;
    }
    updateRow(row, h);
    return row;
  }

  // uiOf returns what a user did to a hero's row, to keep.
  function uiOf(id) {
    let u = view.ui.get(id);
    if (!u) {
      u = { pick: undefined, assigning: false, terminating: false };
      view.ui.set(id, u);
    }
    return u;
  }

  function forgetUI(id) {
    const u = view.ui.get(id);
    if (u && u.pick === undefined && !u.assigning && !u.terminating) view.ui.delete(id);
  }

  function updateRow(row, h) {
    const { tr } = row;
    if (tr.dataset.state !== (h.is_patrolling ? 'patrolling' : 'idle')) tr.dataset.state = h.is_patrolling ? 'patrolling' : 'idle';
    if (tr.dataset.location !== h.location) tr.dataset.location = h.location;
    if (row.labelled !== h.name) {
      row.labelled = h.name;
      row.name.textContent = h.name;
      row.sel.setAttribute('aria-label', `New location for ${h.name}`);
      row.go.setAttribute('aria-label', `Assign ${h.name}`);
      row.term.setAttribute('aria-label', `Terminate ${h.name}`);
      row.meter.setAttribute('aria-label', `Health of ${h.name}`);
    }
    const hp = String(h.health);
    if (tr.dataset.health !== hp) {
      tr.dataset.health = hp;
      row.meter.value = h.health;
      row.hp.textContent = hp;
    }
    setText(row.badge, h.is_patrolling ? 'Patrolling' : 'Idle');
    setText(row.loc, h.location);
    syncOptions(row, h);
  }

  function flashRow(row, kind) {
    const { tr } = row;
    tr.dataset.change = kind;
    // Switching between two identical animations restarts it without
    // forcing a layout.
    if (tr.classList.contains('hit-a')) tr.classList.replace('hit-a', 'hit-b');
    else if (tr.classList.contains('hit-b')) tr.classList.replace('hit-b', 'hit-a');
    else tr.classList.add('hit-a');
  }

  // syncOptions keeps the row's drop-down showing the hero's location,
  // unless the user is using it: a focused or changed drop-down is left
  // alone. Until someone uses it, a drop-down holds one option, the
  // hero's location; fillOptions gives it every choice when it gets focus
  // or a pointer press. That keeps rows cheap to build.
  function syncOptions(row, h) {
    const { sel } = row;
    if (document.activeElement === sel) return;
    if (!row.full) {
      const only = sel.options[0];
      if (!only) sel.append(new Option(h.location, h.location, true, true));
      else if (only.value !== h.location) {
        only.value = h.location;
        only.text = h.location;
      }
      return;
    }
    if (row.optionsKey !== optionsKey(h)) fillOptions(row, h);
    if (!row.dirty && sel.value !== h.location) sel.value = h.location;
  }

  function optionsKey(h) {
    return state.locations.includes(h.location) ? state.locationsKey : `${state.locationsKey}\n${h.location}`;
  }

  // fillOptions gives the row's drop-down home and every known city.
  function fillOptions(row, h) {
    const { sel } = row;
    const key = optionsKey(h);
    if (row.full && row.optionsKey === key) return;
    const want = state.locations.includes(h.location) ? state.locations : [...state.locations, h.location];
    const keep = row.dirty ? sel.value : h.location;
    sel.replaceChildren(...want.map((v) => new Option(v, v)));
    sel.value = want.includes(keep) ? keep : h.location;
    if (sel.value !== keep) row.dirty = false;
    row.full = true;
    row.optionsKey = key;
  }

  function matches(h) {
    const f = state.filter;
    if (f.city && h.location !== f.city) return false;
    return !f.name || h.name.toLowerCase().includes(f.name);
  }

  // applyFilter shows only the heroes matching the filter.
  function applyFilter() {
    const name = el.filterName.value.trim().toLowerCase();
    const city = el.filterCity.value;
    if (name === state.filter.name && city === state.filter.city) return;
    state.filter.name = name;
    state.filter.city = city;
    refilter();
    renderWindow();
    renderCounts();
    requestFrame();
  }

  function renderCounts() {
    const total = model.heroes.size;
    const filtered = state.filter.name || state.filter.city;
    const n = shown().length;
    setText(el.count, filtered ? `${n} of ${total}` : String(total));
    // A dispatch that restarted knows nothing until it has read a city:
    // say so instead of showing an empty table.
    setText(el.empty, state.catchingUp ? 'Dispatch is catching up with the cities…' : 'No superheroes yet. Create one.');
    el.empty.hidden = total > 0 && !state.catchingUp;
    el.noMatch.hidden = total === 0 || n > 0;
    for (const v of state.cities.values()) {
      if (v.countsDirty) renderCityCounts(v);
    }
  }
  // ---- cities ----

  function onCluster(cluster, initial) {
    if (!cluster) return;
    if (state.catchingUp !== (cluster.ready === false)) {
      state.catchingUp = cluster.ready === false;
      document.body.classList.toggle('catching-up', state.catchingUp);
      renderCounts();
    }
    const events = [];
    const common = commonDigest(cluster.cities);
    for (const c of cluster.cities) {
      let v = state.cities.get(c.name);
      if (!v) {
        v = cityView(c.name);
        state.cities.set(c.name, v);
        el.cities.append(v.card);
        if (state.loaded && !initial && c.state !== 'down') {
          events.push({ kind: 'joined', text: `${c.name} joined the cluster`, city: c.name });
        }
      } else if (!initial) {
        cityEvents(v.status, c, events);
      }
      v.status = c;
      v.receivedAt = performance.now();
      v.peak = Math.max(v.peak, c.state === 'down' ? 0 : c.lag_ms || 0);
      v.synced = c.state !== 'down' && (cluster.in_sync || c.digest === common);
      if (c.state === 'down' && !v.downSince) v.downSince = new Date();
      if (c.state !== 'down') v.downSince = null;
      renderCity(v);
    }
    state.cluster = cluster;
    const s = cluster.cities.length === 0 ? 'unknown' : cluster.in_sync ? 'in-sync' : 'diverged';
    if (el.sync.dataset.state !== s) {
      el.sync.dataset.state = s;
      el.sync.textContent = { unknown: 'sync unknown', 'in-sync': 'all replicas in sync', diverged: 'replicas diverged: converging' }[s];
    }
    const names = [...state.cities.keys()];
    const locations = ['home', ...names];
    if (locations.join('\n') !== state.locations.join('\n')) {
      state.locations = locations;
      state.locationsKey = locations.join('\n');
      syncLocationOptions();
    }
    publish(events);
  }

  // cityEvents appends the events the change of a city's status from prev
  // to c means. A higher incarnation of a city that stayed up is its actor
  // restarting after a bomb; restarting turning into up is the city back in
  // sync; a lower incarnation is a new process.
  function cityEvents(prev, c, out) {
    const was = prev.state;
    const now = c.state;
    if (was !== 'down' && now === 'down') {
      out.push({ kind: 'down', text: `${c.name} is down`, city: c.name });
      return;
    }
    if (was === 'down' && now !== 'down') {
      out.push({ kind: 'joined', text: `${c.name} joined the cluster again`, city: c.name });
      return;
    }
    if (now === 'down') return;
    if (c.incarnation > prev.incarnation) {
      out.push({ kind: 'bombed', text: `${c.name} was bombed: restarting with an empty replica`, city: c.name });
    } else if (c.incarnation < prev.incarnation) {
      out.push({ kind: 'joined', text: `${c.name} joined the cluster again`, city: c.name });
    }
    if (was === 'restarting' && now === 'up') {
      out.push({ kind: 'restarted', text: `${c.name} restarted and is back in sync`, city: c.name });
    }
  }

  // commonDigest returns the digest most up cities share; ties go to the
  // one with more heroes, which the others are catching up with. It is
  // the rule dispatch uses for lag_ms.
  function commonDigest(cities) {
    const votes = new Map();
    for (const c of cities) {
      if (c.state === 'down' || !c.up) continue;
      const v = votes.get(c.digest) || { n: 0, heroes: c.heroes };
      v.n++;
      votes.set(c.digest, v);
    }
    let best = null;
    let bv = null;
    for (const [d, v] of votes) {
      if (!bv || v.n > bv.n || (v.n === bv.n && (v.heroes > bv.heroes || (v.heroes === bv.heroes && d < best)))) {
        best = d;
        bv = v;
      }
    }
    return best;
  }

  const SVG = 'http://www.w3.org/2000/svg';

  function cityView(name) {
    const card = document.createElement('article');
    card.className = 'city';
    card.dataset.city = name;
    card.setAttribute('aria-label', `City ${name}`);

    const head = document.createElement('header');
    const h3 = document.createElement('h3');
    h3.textContent = name;
    const st = span('badge state');
    head.append(h3, st);

    const counts = document.createElement('p');
    counts.className = 'counts';
    const heroes = span('heroes');
    const heroesWord = span('heroes-word');
    const patrolling = span('patrolling');
    counts.append(heroes, ' ', heroesWord, ' · ', patrolling, ' patrolling');

    const syncLine = document.createElement('p');
    syncLine.className = 'sync-line';
    const sync = span('badge sync');
    const replica = span('replica');
    syncLine.append(sync, ' ', replica);

    const lag = document.createElement('div');
    lag.className = 'lag';
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', `0 0 ${CHART_W} ${CHART_H}`);
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img');
    svg.classList.add('spark');
    const area = document.createElementNS(SVG, 'path');
    area.classList.add('spark-area');
    const line = document.createElementNS(SVG, 'path');
    line.classList.add('spark-line');
    svg.append(area, line);
    const lagText = span('lag-text');
    lag.append(svg, lagText);

    card.append(head, counts, syncLine, lag);
    return {
      name,
      card,
      parts: { st, heroes, heroesWord, patrolling, sync, replica, svg, area, line, lagText },
      status: { name, state: 'down', up: false, incarnation: 0, lag_ms: 0, heroes: 0, digest: '' },
      synced: false,
      receivedAt: performance.now(),
      downSince: null,
      peak: 0,
      samples: [],
      countsDirty: true,
    };
  }

  function renderCity(v) {
    const c = v.status;
    const p = v.parts;
    const st = c.state || (c.up ? 'up' : 'down');
    if (v.card.dataset.state !== st) v.card.dataset.state = st;
    setText(p.st, st);
    const sync = st === 'down' ? 'unknown' : v.synced ? 'in-sync' : 'diverged';
    if (v.card.dataset.sync !== sync) v.card.dataset.sync = sync;
    setText(p.sync, { 'in-sync': 'in sync', diverged: 'diverged', unknown: 'no data' }[sync]);
    let replica;
    if (st === 'down') {
      replica = v.downSince ? `unreachable since ${clock(v.downSince)}` : 'unreachable';
    } else {
      const restarts = c.incarnation > 1 ? ` · ${c.incarnation - 1} restart${c.incarnation === 2 ? '' : 's'}` : '';
      replica = `replica: ${c.heroes} live · digest ${c.digest.slice(0, 6)}${restarts}`;
    }
    setText(p.replica, replica);
    renderCityCounts(v);
    renderLag(v);
  }

  function renderCityCounts(v) {
    v.countsDirty = false;
    const c = model.counts.get(v.name) || { heroes: 0, patrolling: 0 };
    setText(v.parts.heroes, String(c.heroes));
    setText(v.parts.heroesWord, c.heroes === 1 ? 'hero' : 'heroes');
    setText(v.parts.patrolling, String(c.patrolling));
  }

  // currentLag is the city's lag now: the last reported lag plus the time
  // since, while it is behind.
  function currentLag(v, now) {
    const c = v.status;
    if (c.state === 'down') return null;
    if (!c.lag_ms) return 0;
    return c.lag_ms + (now - v.receivedAt);
  }

  // sample adds one point to every city's lag chart: the highest lag seen
  // since the previous point, so that a short divergence still shows.
  function sample() {
    const now = performance.now();
    pruneTombs(now);
    for (const v of state.cities.values()) {
      const cur = currentLag(v, now);
      const val = cur === null ? null : Math.max(cur, v.peak);
      v.peak = 0;
      v.samples.push(val);
      if (v.samples.length > SAMPLES) v.samples.shift();
      renderLag(v);
    }
  }

  function renderLag(v) {
    const p = v.parts;
    const cur = currentLag(v, performance.now());
    setText(p.lagText, cur === null ? 'lag: —' : `lag ${duration(cur)}`);
    let peak = 0;
    for (const s of v.samples) if (s !== null && s > peak) peak = s;
    const scale = Math.max(1000, peak);
    const step = CHART_W / (SAMPLES - 1);
    const x0 = CHART_W - (v.samples.length - 1) * step;
    let line = '';
    let area = '';
    let run = [];
    const flush = () => {
      if (run.length === 0) return;
      line += `M${run.join('L')}`;
      const first = run[0].split(',')[0];
      const last = run[run.length - 1].split(',')[0];
      area += `M${first},${CHART_H}L${run.join('L')}L${last},${CHART_H}Z`;
      run = [];
    };
    v.samples.forEach((s, i) => {
      if (s === null) {
        flush();
        return;
      }
      const x = (x0 + i * step).toFixed(1);
      const y = (CHART_H - 1 - (s / scale) * (CHART_H - 3)).toFixed(1);
      run.push(`${x},${y}`);
    });
    flush();
    if (p.line.getAttribute('d') !== line) {
      p.line.setAttribute('d', line);
      p.area.setAttribute('d', area);
    }
    const label = `Lag behind the other replicas over the last ${(SAMPLES * SAMPLE_MS) / 1000} s: peak ${duration(peak)}`;
    if (p.svg.getAttribute('aria-label') !== label) p.svg.setAttribute('aria-label', label);
    const lagging = peak > 0 ? 'yes' : 'no';
    if (v.card.dataset.lagging !== lagging) v.card.dataset.lagging = lagging;
  }

  function duration(ms) {
    if (ms < 1000) return `${Math.round(ms)} ms`;
    return `${(ms / 1000).toFixed(1)} s`;
  }

  // syncLocationOptions updates every drop-down that lists locations, when
  // a city joins.
  function syncLocationOptions() {
    for (const [id, row] of view.rows) if (row.full) syncOptions(row, model.heroes.get(id));
    fillSelect(el.bombCity, ['', ...state.locations.slice(1)], (v) => v || 'random city');
    fillSelect(el.filterCity, ['', ...state.locations], (v) => v || 'everywhere');
  }

  function fillSelect(sel, want, label) {
    const have = [...sel.options].map((o) => o.value);
    if (have.join('\n') === want.join('\n')) return;
    const keep = sel.value;
    sel.replaceChildren(...want.map((v) => new Option(label(v), v)));
    sel.value = want.includes(keep) ? keep : '';
  }

  // ---- feed and flash ----

  function publish(events) {
    if (events.length === 0) return;
    const shown = events.length > EVENTS_PER_FRAME ? events.slice(0, EVENTS_PER_FRAME - 1) : events;
    for (const e of shown) logEvent(e.kind, e.text, e);
    if (shown.length < events.length) {
      const rest = events.length - shown.length;
      logEvent('more', `… and ${rest} more change${rest === 1 ? '' : 's'} at once`);
    }
  }

  function logEvent(kind, text, extra) {
    const li = document.createElement('li');
    li.dataset.event = kind;
    if (extra && extra.damage !== undefined) li.dataset.damage = String(extra.damage);
    if (extra && extra.city) li.dataset.city = extra.city;
    const time = document.createElement('time');
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = clock(now);
    const kindEl = span('kind');
    kindEl.textContent = kind;
    const msg = span('text');
    msg.textContent = text;
    li.append(time, kindEl, msg);
    el.log.prepend(li);
    if (el.log.childElementCount > LOG_MAX) el.log.lastElementChild.remove();
  }

  // clock formats a time of day as 14:05:09. (toLocaleTimeString did, but
  // its first call loads locale data, which held the page for tens of
  // milliseconds in the middle of showing the first snapshot.)
  function clock(d) {
    const two = (n) => (n < 10 ? '0' : '') + n;
    return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  }

  // showFlash shows a message for a while. The same message again while
  // it is shown (dispatch may announce one bomb twice) only restarts its
  // time.
  function showFlash(text, kind) {
    for (const m of el.flash.children) {
      if (m.dataset.kind === kind && m.firstChild.textContent === text) {
        clearTimeout(m.timer);
        m.timer = setTimeout(() => m.remove(), kind === 'error' ? ERROR_MS : FLASH_MS);
        return;
      }
    }
    const p = document.createElement('p');
    p.className = 'msg';
    p.dataset.kind = kind;
    if (kind === 'error') p.setAttribute('role', 'alert');
    const t = document.createElement('span');
    t.textContent = text;
    const x = document.createElement('button');
    x.type = 'button';
    x.textContent = '×';
    x.setAttribute('aria-label', 'Dismiss');
    x.addEventListener('click', () => p.remove());
    p.append(t, x);
    el.flash.prepend(p);
    while (el.flash.children.length > 4) el.flash.lastElementChild.remove();
    p.timer = setTimeout(() => p.remove(), kind === 'error' ? ERROR_MS : FLASH_MS);
  }

  // explain turns a failed command into words naming what went wrong:
  // hero is the superhero's name, city the city the command needed.
  function explain(err, { hero, city }) {
    switch (err.status) {
      case 409:
      case 410:
        return `${hero || 'the superhero'} is dead`;
      case 404:
        return `${hero || 'the superhero'} no longer exists`;
      case 503:
        return city ? `${city} is down` : err.message;
      default:
        return err.message;
    }
  }

  // ---- controls ----

  function span(cls) {
    const s = document.createElement('span');
    s.className = cls;
    return s;
  }

  function setText(node, text) {
    if (node && node.textContent !== text) node.textContent = text;
  }

  function rowOf(target) {
    const tr = target.closest('tr[data-hero-id]');
    return tr ? view.rows.get(tr.dataset.heroId) : undefined;
  }

  // A drop-down gets all its choices as soon as someone reaches for it.
  const fillOnUse = (e) => {
    const row = e.target.classList.contains('assign-select') && rowOf(e.target);
    const h = row && model.heroes.get(row.id);
    if (h) fillOptions(row, h);
  };
  el.tbody.addEventListener('focusin', fillOnUse);
  el.tbody.addEventListener('pointerdown', fillOnUse);
  el.tbody.addEventListener('mousedown', fillOnUse);

  el.tbody.addEventListener('change', (e) => {
    const row = e.target.classList.contains('assign-select') && rowOf(e.target);
    if (!row) return;
    row.dirty = true;
    uiOf(row.id).pick = row.sel.value;
  });

  el.tbody.addEventListener('focusout', (e) => {
    const row = e.target.classList.contains('assign-select') && rowOf(e.target);
    const h = row && model.heroes.get(row.id);
    if (h) setTimeout(() => { if (view.rows.get(h.id) === row && model.heroes.has(h.id)) syncOptions(row, model.heroes.get(h.id)); });
  });

  // A command's row may have left the table, or been built again, by the
  // time the answer comes: the answer goes to the hero's row of the
  // moment, and to view.ui for a row built later.
  el.tbody.addEventListener('submit', (e) => {
    e.preventDefault();
    const row = rowOf(e.target);
    const hero = row && model.heroes.get(row.id);
    if (!hero) return;
    const to = row.sel.value;
    const u = uiOf(hero.id);
    u.assigning = true;
    row.go.disabled = true;
    send({ op: 'assign', id: hero.id, location: to })
      .catch((err) => showFlash(`Could not assign ${hero.name} to ${to}: ${explain(err, { hero: hero.name, city: to === 'home' ? '' : to })}.`, 'error'))
      .finally(() => {
        u.assigning = false;
        u.pick = undefined;
        forgetUI(hero.id);
        const r = view.rows.get(hero.id);
        if (!r) return;
        r.go.disabled = false;
        r.dirty = false;
        const now = model.heroes.get(hero.id);
        if (now) syncOptions(r, now);
      });
  });

  el.tbody.addEventListener('click', (e) => {
    if (!e.target.classList.contains('terminate')) return;
    const row = rowOf(e.target);
    const hero = row && model.heroes.get(row.id);
    if (!hero) return;
    const u = uiOf(hero.id);
    u.terminating = true;
    row.term.disabled = true;
    send({ op: 'delete', id: hero.id })
      .catch((err) => {
        u.terminating = false;
        forgetUI(hero.id);
        const r = view.rows.get(hero.id);
        if (r) r.term.disabled = false;
        showFlash(`Could not terminate ${hero.name}: ${explain(err, { hero: hero.name })}.`, 'error');
      });
  });

  el.createForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const name = el.createName.value.trim();
    const cmd = { op: 'create' };
    if (name) cmd.name = name;
    el.create.disabled = true;
    send(cmd)
      .then(() => { el.createName.value = ''; })
      .catch((err) => showFlash(`Could not create a superhero: ${explain(err, {})}.`, 'error'))
      .finally(() => { el.create.disabled = !connected(); });
  });

  el.bombForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const city = el.bombCity.value;
    const cmd = { op: 'bomb' };
    if (city) cmd.city = city;
    el.bomb.disabled = true;
    send(cmd)
      .catch((err) => showFlash(`Could not destroy ${city || 'a city'}: ${explain(err, { city })}.`, 'error'))
      .finally(() => { el.bomb.disabled = !connected(); });
  });

  el.filters.addEventListener('submit', (e) => e.preventDefault());
  el.filterName.addEventListener('input', applyFilter);
  el.filterCity.addEventListener('change', applyFilter);

  setInterval(sample, SAMPLE_MS);
  renderCounts();
  connect();
})();
