// Package web is the dispatch node's web layer: a JSON API, a WebSocket
// feed and the live page, served by Echo. It knows the cluster only through
// the service.Backend interface, which the actor side implements, and it
// pushes service events to pages through a Hub that never blocks the
// publisher. The domain (statuses, errors, events) lives in
// dispatch/service; this package only maps it to HTTP status codes and
// JSON.
//
// # Front door
//
// These checks come before routing, so unknown routes get them too, in
// this order:
//
//   - Host. The Host header must name this server: by default the -http
//     address (unless it is a wildcard such as 0.0.0.0), localhost,
//     127.0.0.1 or [::1], each with the port listened on; Config.AllowedHosts
//     (-allowed-hosts) adds names ("name" on the same port, "name:port"
//     exactly). Anything else gets 421 Misdirected Request on every route,
//     the WebSocket and the probes included: a page of another site whose
//     name its owner points at 127.0.0.1 (DNS rebinding) reaches nothing.
//     A Host without a port means port 80.
//   - Token. With Config.APIToken (-api-token or $SUPERHERO_API_TOKEN;
//     required, at least 16 bytes, when -http is not a loopback address),
//     everything but /healthz, /readyz and /login needs it: the API as
//     "Authorization: Bearer TOKEN" (401 otherwise, with WWW-Authenticate);
//     the page, its assets and /ws the bearer token or the session cookie.
//     Without a token nothing is asked.
//
// The page's session: at start, dispatch logs a one-time link,
// http://HOST:PORT/login?t=CODE ("page login link"). GET of it sets the
// cookie superhero_session_PORT (HttpOnly, SameSite=Strict, Path=/, for
// 24 h; named after the port because browsers do not keep cookies apart
// by port) and answers 303 to /; the code is then used up (401 the next
// time) and a new link is logged for the next browser. HEAD of the link
// answers 303 or 401 without using it up or setting a cookie. The API
// does not take the cookie. Tokens, codes and sessions are compared in
// constant time.
//
// State-changing calls (POST, PUT, and a DELETE that carries a body) must
// send Content-Type: application/json (a charset parameter may only say
// utf-8), or get 415 before anything is done: a page of another site can
// send a form or text/plain without asking first, but not this.
//
// # Limits
//
//   - A request, headers and body, must arrive within 10 s of its first
//     byte (Config.ReadTimeout): a client that sends part of a body and
//     stalls gets 408 {"error":"the request body did not arrive in time"}
//     and its connection is closed; one that stalls within its headers is
//     closed without an answer. An answer must be taken within 30 s
//     (Config.AnswerTimeout). Headers over 32 KiB get the HTTP server's
//     plain 431.
//   - At most 512 connections at once (-max-conns), WebSockets included.
//     One more is answered 503 {"error":"too many connections (at most
//     N): try again later"} with Retry-After: 1 and Connection: close,
//     after its request's headers and without reaching a handler; it is
//     closed without an answer if they do not come within 1 s, or when
//     more than 32 are being refused at that moment.
//   - At most 128 WebSockets at once (-max-websockets, less than
//     -max-conns so the API stays reachable): one more upgrade gets 503
//     before upgrading. A WebSocket is not bound by the read timeout; it
//     is pinged every 30 s, and closed when the pong does not come back
//     within 5 s.
//   - An error quotes at most 100 bytes of what the client sent, then its
//     length: invalid superhero id "xxxx…"… (20000 bytes). Error texts
//     never exceed 1 KiB.
//
// # Logs
//
// Every line carries node=dispatch and actor=web (actor=hub for the
// hub). Single requests, WebSocket commands and WebSocket opens and
// closes are logged at DEBUG (a 500, which is a bug, at ERROR). Once a
// minute (Config.LogSummaryInterval, -log-summary) one INFO line sums up
// the interval, and nothing is written for an idle one:
//
//	msg="http summary" interval=1m0s requests=120 2xx=110 3xx=0 4xx=10 5xx=0 1xx=1 ws_commands=40 ws_command_errors=2 ws_opened=1 websockets=1 refused_conns=0
//
// (1xx counts WebSocket upgrades.) A refused request (421, 401, a used
// login link, the WebSocket cap, the connection cap) is logged at WARN
// once per kind and interval, the rest of that kind at DEBUG, and all of
// them are counted in the summary.
//
// # HTTP API
//
// Every error, including unknown routes (404), wrong methods (405),
// misdirected requests (421), a missing token (401), a wrong content type
// (415) and oversize bodies (413), is {"error": "..."}.
//
// Every GET route answers HEAD too, with the same status and headers and
// no body.
//
//	GET    /healthz                        200 (the process runs)
//	GET    /readyz                         200; 503 while dispatch catches up after a restart
//
// Every command and read below answers 503 "dispatch is catching up" until
// dispatch has read every city that is up after a restart. Create, delete and assign home
// answer only once a city holds the write (-write-quorum), else 503 with
// "outcome unknown".
//
//	GET    /api/superheroes                200 {"superheroes":[HERO...]} sorted by name, then id
//	POST   /api/superheroes                201 HERO; body optional {"name":"..."}; 400 name refused (see below)
//	GET    /api/superheroes/{id}           200 HERO; 400 bad id; 404 never seen; 410 dead ({"error","superhero":HERO}, the tombstone)
//	DELETE /api/superheroes/{id}           204 (also for a dead hero); 400; 404
//	PUT    /api/superheroes/{id}/location  200 HERO; body {"location":"gotham"|"home"};
//	                                       400 bad location; 404; 409 dead; 503 city down
//	POST   /api/bomb                       202 {"city":"gotham"}; body optional {"city":"..."}; 400; 503
//	GET    /api/cluster                    200 {"cities":[{"name","up","heroes","digest","state","incarnation","lag_ms"}...],"in_sync":BOOL,"ready":BOOL}
//	GET    /api/cities/{city}/superheroes  200 {"superheroes":[...]}; 400 unknown city; 503 down
//	GET    /login?t=CODE                   303 to / with the session cookie; 401 code unknown or used
//
// HERO is {"id","name","location","is_patrolling","health","dead","updated_at",
// "updated_by","stamp"}: updated_at is the write's wall time in RFC 3339
// with nanoseconds, updated_by the node that wrote it, and stamp the whole
// stamp, {"wall":"1751890000123456789","logical":0,"node":"gotham"}, with
// the wall in nanoseconds as a decimal string (a JSON number would lose
// precision in JavaScript). Entries for one id are ordered by the merge
// rule: a tombstone beats any live entry, then the later stamp (wall,
// logical, node) wins, then content (see crdt/doc.go).
//
// Bodies are JSON objects of at most 64 KiB (413) with no unknown fields
// (400), in UTF-8: a body with bytes that are not UTF-8 gets 400 (the JSON
// decoder would otherwise replace them silently). Mutating calls from a
// browser page of another origin get 403.
//
// A hero's name is one line of plain text of at most 64 characters,
// stored as sent but for leading and trailing white space, which is
// trimmed (blank: a made-up name). A name holding any of these gets 400
// naming the character, and is never changed instead:
//
//   - control characters, tab and newline included;
//   - U+2028 and U+2029 (line and paragraph separators);
//   - bidirectional controls: U+202A–U+202E, U+2066–U+2069, U+200E,
//     U+200F, U+061C;
//   - zero-width characters: U+200B–U+200D, U+2060, U+FEFF;
//   - any other invisible format character (category Cf: the soft
//     hyphen, tag characters...);
//   - U+FFFD, which is also what a JSON escape of half a surrogate pair
//     such as \ud800 decodes to.
//
// # WebSocket feed: GET /ws
//
// The upgrade passes the front door like any request (421, 401), and its
// Origin must be this server's or an allowed origin (403).
//
// The server sends, as JSON text frames:
//
//	{"type":"snapshot","cluster":CLUSTER,"tombstone_ttl_ms":N,"parts":P,"count":C}   first, once
//	{"type":"snapshot_part","part":I,"parts":P,"heroes":[HERO...]}   I = 1..P, right after it
//	{"type":"delta","heroes":[HERO...]}                         changed entries; "dead":true removes
//	{"type":"cluster","cluster":CLUSTER}                        city status changed
//	{"type":"flash","message":"gotham has been destroyed"}      for every page
//
// CLUSTER is the body of GET /api/cluster. A snapshot comes in pieces: the
// snapshot frame, then P snapshot_part frames (none for an empty
// replica) holding C live heroes together, at most 500 a frame
// (Config.SnapshotPartHeroes), sorted by name, then id, with no other
// frame in between: a page applies the snapshot once its last part came,
// and the events published meanwhile follow it. tombstone_ttl_ms is how
// long replicas keep a tombstone, and so how long a page should remember
// one.
//
// The parts are encoded once and shared: dispatch reads its replica for
// one page, the pages that connect during that read wait for it, and the
// pages that connect later get the same bytes as long as at most 256
// heroes changed since (HubConfig.MaxCatchUp), those changes coming in
// their first delta; after that the next page makes a new read. So a
// crowd of pages connecting at once costs dispatch's replica actor one
// read and one encoding, and a page's snapshot frame, its own, only
// carries the cluster status as that page joined. Parts are written to
// two pages at a time (Config.SnapshotWriters), in the order they joined;
// a page that takes a part slowly (over 50 ms) goes back in line for the
// next. Events to the pages already open never wait for that. Deltas that pile up
// while a frame is being written are merged into one, keeping per id the
// entry that wins by the merge rule. Frames carry entries as dispatch's replica took them,
// which is not always in stamp order: a page applies an entry only if it
// wins against what it holds for the id, tombstones included. A page
// that falls too far behind is dropped: closed with status 1013 (try again
// later), or cut off when a frame cannot be written within the write
// timeout. On shutdown the status is 1001 (going away). Pages reconnect and
// start again from a snapshot.
//
// The client sends commands; each gets exactly one reply, in order:
//
//	{"op":"create","name"?:"...","ref"?:R}          -> {"type":"ok","ref":R,"hero":HERO}
//	{"op":"delete","id":"...","ref"?:R}             -> {"type":"ok","ref":R,"id":"..."}
//	{"op":"assign","id":"...","location":"...","ref"?:R} -> {"type":"ok","ref":R,"hero":HERO}
//	{"op":"bomb","city"?:"...","ref"?:R}            -> {"type":"ok","ref":R,"city":"gotham"}
//	failure                                         -> {"type":"error","ref":R,"error":"...","status":NNN}
//
// R is any JSON value, echoed back. Status codes are those of the HTTP
// API, and the same rules apply (a create's name, UTF-8). A frame that is
// not a command (bad JSON, bytes that are not UTF-8, unknown op or field,
// bad id, a binary frame, more than 64 KiB) gets an error reply and the
// connection stays open.
package web
