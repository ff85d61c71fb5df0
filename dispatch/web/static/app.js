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
// A frame touching one hero touches one table row: rows live in a Map by
// id and are updated in place, never re-rendered. window.__perf reports
// how long applying each frame took (performance.now()) and how big it
// was, for the browser test.
'use strict';

(() => {
  const $ = (sel) => document.querySelector(sel);
  const el = {
    conn: $('#conn'),
    sync: $('#sync'),
    cities: $('#cities'),
    tbody: $('#heroes tbody'),
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
    heroes: new Map(),   // id -> live hero: the entry that won so far
    tombs: new Map(),    // id -> {h, until}: tombstones seen, oldest first (see bury)
    tombstoneMs: 10 * 60 * 1000, // how long to remember a tombstone; each snapshot says
    rows: new Map(),     // id -> row (see newRow)
    order: [],           // ids of the heroes with rows, sorted by name, then id: the row order
    unbuilt: [],         // ids of live heroes whose rows are still to be built
    staged: [],          // rows built but not yet in the table
    building: false,     // rows are being built in steps
    snapshotAt: null,    // when the latest snapshot came, until its rows are built
    counts: new Map(),   // location -> {heroes, patrolling}, from state.heroes
    cities: new Map(),   // name -> city view (see cityView)
    cluster: { cities: [], in_sync: false },
    catchingUp: false,   // dispatch restarted and has not read a city yet
    locations: ['home'], // home and every known city: the assign choices
    locationsKey: 'home', // locations joined by newlines
    filter: { name: '', city: '' },
    shown: 0,            // rows matching the filter
    loaded: false,       // a snapshot was applied
    ws: null,
    attempt: 0,
    nextRef: 1,
    pending: new Map(),  // ref -> {resolve, reject, timer}
  };

  const BUILD_NOW = 100;     // rows built by the frame that brings them; more wait for build steps
  const BUILD_BATCH = 20;    // rows in the first batch of a build step
  const BUILD_STEP_MS = 8;   // longest build step
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
    snapshotApplyMs: 0,   // parse + apply of the latest snapshot
    snapshotHeroes: 0,
    snapshotBytes: 0,
    snapshotReadyMs: 0,   // from the snapshot's arrival to its last row built
    maxBuildStepMs: 0,    // the longest step building rows after a frame
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
    ws.addEventListener('message', (e) => {
      const t0 = performance.now();
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return;
      }
      handle(msg);
      record(msg, e.data, performance.now() - t0);
      if (msg.type === 'delta') measureRender();
    });
    ws.addEventListener('close', (e) => {
      if (state.ws !== ws) return;
      state.ws = null;
      for (const [ref, p] of state.pending) {
        clearTimeout(p.timer);
        p.reject(new CommandError('the connection to dispatch was lost', 0));
        state.pending.delete(ref);
      }
      scheduleReconnect(`disconnected${e.code ? ` (${e.code})` : ''}`);
    });
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
  // snapshot_part frames, nothing in between. It is applied whole, by
  // onSnapshot, when its last part has come.
  let assembling = null; // {msg, heroes, next}: the snapshot being received
  function onSnapshotFrame(msg) {
    assembling = { msg, heroes: [], next: 1 };
    if (!(msg.parts > 0)) finishSnapshot();
  }

  function onSnapshotPart(msg) {
    if (!assembling || msg.part !== assembling.next) return;
    for (const h of msg.heroes || []) assembling.heroes.push(h);
    assembling.next++;
    if (msg.part >= assembling.msg.parts) finishSnapshot();
  }

  function finishSnapshot() {
    const { msg, heroes } = assembling;
    assembling = null;
    onSnapshot({ ...msg, heroes });
  }

  // ---- heroes ----

  // onSnapshot makes the page hold the live heroes of the snapshot. A hero
  // the page holds a tombstone for stays dead (a tombstone beats any live
  // entry), and an entry the page holds that wins against the snapshot's
  // is kept. A hero missing from the snapshot is dropped but not
  // tombstoned: a restarted dispatch starts empty and is refilled.
  function onSnapshot(msg) {
    state.attempt = 0;
    state.snapshotAt = performance.now();
    if (msg.tombstone_ttl_ms > 0) state.tombstoneMs = msg.tombstone_ttl_ms;
    onCluster(msg.cluster || { cities: [], in_sync: false }, true);
    const next = new Map();
    for (const h of msg.heroes || []) if (!h.dead && !state.tombs.has(h.id)) next.set(h.id, h);
    for (const [id, h] of state.heroes) {
      if (!next.has(id)) forget(h);
    }
    const fresh = [];
    for (const h of next.values()) {
      const prev = state.heroes.get(h.id);
      if (!prev) fresh.push(h);
      else if (wins(h, prev)) setHero(h, false);
    }
    addMany(fresh);
    state.loaded = true;
    renderCounts();
    if (!state.building) {
      perf.snapshotReadyMs = performance.now() - state.snapshotAt;
      state.snapshotAt = null;
    }
    logEvent('connection', `connected: ${next.size} superhero${next.size === 1 ? '' : 'es'}`);
  }

  function onDelta(heroes) {
    const events = [];
    const fresh = new Map(); // id -> live hero new to the page, added together below
    for (const h of heroes) {
      const prev = state.heroes.get(h.id) || fresh.get(h.id);
      const held = prev || tombOf(h.id);
      if (held && !wins(h, held)) continue; // stale, or already applied
      heroEvents(prev, h, events);
      if (h.dead) {
        bury(h);
        if (fresh.has(h.id)) fresh.delete(h.id);
        else if (prev) forget(prev);
      } else if (state.heroes.has(h.id)) {
        setHero(h, true);
      } else {
        fresh.set(h.id, h);
      }
    }
    addMany([...fresh.values()]);
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

  function countAt(loc) {
    let c = state.counts.get(loc);
    if (!c) {
      c = { heroes: 0, patrolling: 0 };
      state.counts.set(loc, c);
    }
    return c;
  }

  function count(h, by) {
    const c = countAt(h.location);
    c.heroes += by;
    if (h.is_patrolling) c.patrolling += by;
    const v = state.cities.get(h.location);
    if (v) v.countsDirty = true;
  }

  // setHero replaces a known live hero and updates its row in place (a
  // row still waiting to be built is built from the latest entry anyway).
  function setHero(h, highlight) {
    const prev = state.heroes.get(h.id);
    count(prev, -1);
    count(h, 1);
    state.heroes.set(h.id, h);
    const row = state.rows.get(h.id);
    if (!row) return;
    updateRow(row, h);
    if (highlight) flashRow(row, h.health < prev.health ? 'damage' : h.health > prev.health ? 'heal' : 'update');
  }

  // addMany adds new live heroes. Few get their rows at once. Many (a
  // snapshot, a partition healing) get the first BUILD_NOW rows at once;
  // the others are built off the page in steps of about BUILD_STEP_MS, so
  // the page stays responsive, and go in together at the end, so the
  // table is laid out once and not at every step.
  function addMany(heroes) {
    if (heroes.length === 0) return;
    for (const h of heroes) {
      state.heroes.set(h.id, h);
      count(h, 1);
    }
    if (heroes.length <= BUILD_NOW && !state.building) {
      if (heroes.length > 1) heroes.sort(compareHeroes);
      insertRows(heroes.map(newRow), state.loaded && heroes.length <= 4);
      return;
    }
    for (const h of heroes) state.unbuilt.push(h.id);
    sortUnbuilt();
    if (state.building) return; // the running steps take them
    insertRows(state.unbuilt.splice(0, BUILD_NOW).map((id) => newRow(state.heroes.get(id))), false);
    state.building = true;
    setTimeout(buildStep);
  }

  // sortUnbuilt sorts the heroes waiting for rows, dropping the dead.
  function sortUnbuilt() {
    state.unbuilt = state.unbuilt.filter((id) => state.heroes.has(id) && !state.rows.has(id));
    state.unbuilt.sort((a, b) => compareHeroes(state.heroes.get(a), state.heroes.get(b)));
  }

  // buildStep builds waiting rows, off the page, for about BUILD_STEP_MS,
  // and inserts them all once none is left.
  function buildStep() {
    const t0 = performance.now();
    let n = BUILD_BATCH;
    while (state.unbuilt.length > 0 && n > 0) {
      const t1 = performance.now();
      const ids = state.unbuilt.splice(0, n);
      for (const id of ids) {
        const h = state.heroes.get(id);
        if (h && !state.rows.has(id)) state.staged.push(newRow(h));
      }
      // Size the next batch to the time left, from what this one cost.
      const now = performance.now();
      n = Math.floor((BUILD_STEP_MS - (now - t0)) / Math.max((now - t1) / ids.length, 0.005));
    }
    if (state.unbuilt.length === 0) {
      const rows = state.staged.filter((r) => state.rows.get(r.id) === r);
      state.staged = [];
      rows.sort((a, b) => compareHeroes(state.heroes.get(a.id), state.heroes.get(b.id)));
      insertRows(rows, false);
      state.building = false;
      renderCounts();
      if (state.snapshotAt !== null) {
        perf.snapshotReadyMs = performance.now() - state.snapshotAt;
        state.snapshotAt = null;
      }
    } else {
      setTimeout(buildStep);
    }
    perf.maxBuildStepMs = Math.max(perf.maxBuildStepMs, performance.now() - t0);
  }

  // insertRows puts new rows, sorted, into the table at their places.
  function insertRows(rows, highlight) {
    if (rows.length === 0) return;
    if (rows.length <= 4) {
      for (const row of rows) {
        const h = state.heroes.get(row.id);
        const i = lowerBound(h);
        state.order.splice(i, 0, row.id);
        const next = i + 1 < state.order.length ? state.rows.get(state.order[i + 1]).tr : null;
        el.tbody.insertBefore(row.tr, next);
        if (highlight) flashRow(row, 'new');
      }
      return;
    }
    // Merge them into the order, and insert each run of new rows before
    // the row already in the table that follows it.
    const merged = [];
    const frag = document.createDocumentFragment();
    let i = 0;
    let j = 0;
    while (i < state.order.length || j < rows.length) {
      if (j >= rows.length || (i < state.order.length && compareHeroes(state.heroes.get(state.order[i]), state.heroes.get(rows[j].id)) < 0)) {
        const id = state.order[i++];
        if (frag.firstChild) el.tbody.insertBefore(frag, state.rows.get(id).tr);
        merged.push(id);
      } else {
        frag.append(rows[j].tr);
        merged.push(rows[j++].id);
      }
    }
    if (frag.firstChild) el.tbody.append(frag);
    state.order = merged;
  }

  // forget removes a hero that died or is gone from a new snapshot.
  function forget(prev) {
    const row = state.rows.get(prev.id);
    if (row) {
      const i = lowerBound(prev);
      if (state.order[i] === prev.id) state.order.splice(i, 1);
      else state.order = state.order.filter((id) => id !== prev.id);
      state.rows.delete(prev.id);
      if (row.shown) state.shown--;
      row.tr.remove();
    }
    count(prev, -1);
    state.heroes.delete(prev.id);
  }

  function compareHeroes(a, b) {
    if (a.name !== b.name) return a.name < b.name ? -1 : 1;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  }

  // lowerBound returns the index in state.order of the first hero not
  // before h.
  function lowerBound(h) {
    let lo = 0;
    let hi = state.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const other = state.heroes.get(state.order[mid]);
      if (other && compareHeroes(other, h) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

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
      shown: true,     // matches the filter (showIfMatching hides it if not)
      labelled: '',    // the name the labels were made for
      full: false,     // the drop-down lists every location (see syncOptions)
      optionsKey: '',  // the locations it lists, when full
    };
    state.rows.set(h.id, row);
    state.shown++;
    updateRow(row, h);
    return row;
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
    showIfMatching(row, h);
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
  // or a pointer press. That keeps 1,000 rows cheap to build.
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

  function showIfMatching(row, h) {
    const show = matches(h);
    if (show === row.shown) return;
    row.shown = show;
    row.tr.hidden = !show;
    state.shown += show ? 1 : -1;
  }

  function applyFilter() {
    state.filter.name = el.filterName.value.trim().toLowerCase();
    state.filter.city = el.filterCity.value;
    for (const [id, row] of state.rows) showIfMatching(row, state.heroes.get(id));
    renderCounts();
  }

  function renderCounts() {
    const total = state.heroes.size;
    const filtered = state.filter.name || state.filter.city;
    setText(el.count, filtered ? `${state.shown} of ${total}` : String(total));
    // A dispatch that restarted knows nothing until it has read a city:
    // say so instead of showing an empty table.
    setText(el.empty, state.catchingUp ? 'Dispatch is catching up with the cities…' : 'No superheroes yet. Create one.');
    el.empty.hidden = total > 0 && !state.catchingUp;
    el.noMatch.hidden = total === 0 || state.shown > 0;
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
    const c = state.counts.get(v.name) || { heroes: 0, patrolling: 0 };
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
    for (const [id, row] of state.rows) if (row.full) syncOptions(row, state.heroes.get(id));
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

  function clock(d) {
    return d.toLocaleTimeString([], { hour12: false });
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
    return tr ? state.rows.get(tr.dataset.heroId) : undefined;
  }

  // A drop-down gets all its choices as soon as someone reaches for it.
  const fillOnUse = (e) => {
    const row = e.target.classList.contains('assign-select') && rowOf(e.target);
    const h = row && state.heroes.get(row.id);
    if (h) fillOptions(row, h);
  };
  el.tbody.addEventListener('focusin', fillOnUse);
  el.tbody.addEventListener('pointerdown', fillOnUse);
  el.tbody.addEventListener('mousedown', fillOnUse);

  el.tbody.addEventListener('change', (e) => {
    const row = e.target.classList.contains('assign-select') && rowOf(e.target);
    if (row) row.dirty = true;
  });

  el.tbody.addEventListener('focusout', (e) => {
    const row = e.target.classList.contains('assign-select') && rowOf(e.target);
    const h = row && state.heroes.get(row.id);
    if (h) setTimeout(() => { if (state.rows.get(h.id) === row) syncOptions(row, state.heroes.get(h.id)); });
  });

  el.tbody.addEventListener('submit', (e) => {
    e.preventDefault();
    const row = rowOf(e.target);
    const hero = row && state.heroes.get(row.id);
    if (!hero) return;
    const to = row.sel.value;
    row.go.disabled = true;
    send({ op: 'assign', id: hero.id, location: to })
      .catch((err) => showFlash(`Could not assign ${hero.name} to ${to}: ${explain(err, { hero: hero.name, city: to === 'home' ? '' : to })}.`, 'error'))
      .finally(() => {
        row.go.disabled = false;
        row.dirty = false;
        const now = state.heroes.get(hero.id);
        if (now) syncOptions(row, now);
      });
  });

  el.tbody.addEventListener('click', (e) => {
    if (!e.target.classList.contains('terminate')) return;
    const row = rowOf(e.target);
    const hero = row && state.heroes.get(row.id);
    if (!hero) return;
    row.term.disabled = true;
    send({ op: 'delete', id: hero.id })
      .catch((err) => {
        row.term.disabled = false;
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
