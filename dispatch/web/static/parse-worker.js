// Parses a big frame off the page's main thread (see bigFrame in app.js)
// and sends it back in parts: first the frame without its heroes, then
// its heroes PIECE at a time, each a message of its own, then the end. A
// piece costs the page a few milliseconds to receive, where parsing the
// whole frame would hold it for tens of them.
'use strict';

const PIECE = 500;

self.onmessage = (e) => {
  const { seq, data } = e.data;
  let msg;
  try {
    msg = JSON.parse(data);
  } catch (err) {
    self.postMessage({ seq, error: String(err) });
    return;
  }
  const heroes = Array.isArray(msg.heroes) ? msg.heroes : [];
  msg.heroes = [];
  self.postMessage({ seq, frame: msg, bytes: new TextEncoder().encode(data).length, heroes: heroes.length });
  for (let i = 0; i < heroes.length; i += PIECE) self.postMessage({ seq, piece: heroes.slice(i, i + PIECE) });
  self.postMessage({ seq, end: true });
};
