// The cart's asynchronous side: requests, Web Locks, pauses. Every decision (what to send, what an
// answer means, what is stored) is the module's: `d` is a client's `Driver` (`src/browser.rs`),
// whose methods are synchronous steps of the engine. A request the module wants made comes as
// `[url, method, headers, body, call]`; its answer (`[status, text]`, or null when none came) goes
// back with `d.answer(call, answer)`, which returns the step's result or a `CartError` to stop with.
// Each function the module calls starts in a later microtask, never inside the module's call.
// A task's driver keeps its client until the task ends, and is freed then (`task`); the client's
// own driver (Web Locks, other clients of the page) holds it weakly and is never freed here.
import { CartError, camelAnswer, httpCall } from "./cart-error.js";

const locks = () => {
  const l = globalThis.navigator?.locks;
  return l && typeof l.request === "function" ? l : undefined;
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `work` as a task the module starts: later, and its driver freed at the end. */
const task =
  (work) =>
  async (d, ...args) => {
    await null;
    try {
      return await work(d, ...args);
    } finally {
      d.free();
    }
  };

async function exchange(request) {
  try {
    return await httpCall(request[0], request[1], request[2], request[3]);
  } catch {
    return null;
  }
}

/** Makes the module's request and hands it the answer: `undefined`, or a `CartError`. */
async function ask(d, request) {
  return d.answer(request[4], await exchange(request));
}

/** Runs `work` holding the Web Lock `name` (tabs of one origin take turns); without Web Locks, or
 * if the lock manager refuses (an opaque origin), runs it here. */
async function withLock(name, work) {
  let left = work;
  const run = async () => {
    const w = left;
    left = undefined;
    if (w) await w();
  };
  const l = locks();
  if (l) {
    try {
      await l.request(name, run);
    } catch {
      // Refused: run it below.
    }
  }
  await run();
}

/** Holds the tab lock (while the page lives, so other tabs can tell its log is an open tab's)
 * and queues for the leader lock; false without Web Locks. */
export function holdLocks(d, tab, leader) {
  const l = locks();
  if (!l) return false;
  const held = () => new Promise((resolve) => d.onRelease(resolve));
  l.request(tab, held).catch(() => {});
  l.request(leader, () => {
    d.lead();
    return held();
  }).catch(() => {});
  return true;
}

/** The clients of the open tabs of this cart, from the Web Locks they hold; null if unknown. */
async function liveTabs(key) {
  const l = locks();
  if (!l || typeof l.query !== "function") return null;
  try {
    const answer = await l.query();
    const prefix = `cartsync:${key}:tab:`;
    const live = [];
    for (const list of [answer.held, answer.pending]) {
      for (const lock of list ?? []) {
        if (typeof lock.name === "string" && lock.name.startsWith(prefix)) live.push(lock.name.slice(prefix.length));
      }
    }
    return live;
  } catch {
    return null;
  }
}

/** Every so often, under the lock: the logs of closed tabs whose ops are all settled go. */
async function sweep(d) {
  if (!d.sweepDue()) return;
  const live = await liveTabs(d.key());
  if (live) d.dropDeadLogs(live);
}

/** What the leader does with queued ops: push them, or, local-only, fold them. */
async function flushing(d) {
  const name = d.lockName();
  if (name === undefined) return; // the client is gone
  if (d.localOnly()) {
    await withLock(name, async () => {
      d.compact();
      await sweep(d);
    });
    d.notify();
  } else {
    await pushAll(d);
  }
}

export const flush = task(flushing);

/** A kick of the leader: several before it runs make one. */
export const kick = task(async (d) => {
  d.unkick();
  await flushing(d);
});

/** In a tab that is not the leader: waits until every op queued (in any tab) when called is
 * settled by the leader's pushes, or the leader reports it cannot reach the server. */
async function awaitSettled(d) {
  const target = d.pendingMarks();
  const deadline = Date.now() + 20_000;
  try {
    for (;;) {
      const r = d.settled(target, deadline);
      if (r !== undefined) return r;
      await sleep(50);
    }
  } finally {
    target.free();
  }
}

/** Pushes pending ops (of every tab) until none are left, holding the lock so one tab at a time
 * pushes: null, or the `CartError` that stopped it (the module has scheduled the next try). */
async function pushAll(d) {
  if (d.localOnly()) return null;
  if (!d.leader()) return awaitSettled(d);
  let out = null;
  await withLock(d.lockName(), async () => {
    for (;;) {
      const request = d.beginPush();
      if (!Array.isArray(request)) {
        out = request ?? null;
        break;
      }
      const stop = await ask(d, request);
      if (stop) {
        out = stop;
        break;
      }
    }
    await sweep(d);
  });
  return out;
}

/** Looks up the promotions the cart needs, when some code was never looked up or the last
 * lookup is old; a failed lookup changes nothing. */
async function lookingUp(d) {
  const request = d.promotionsRequest();
  if (request) await ask(d, request);
}

export const lookUpPromotions = task(lookingUp);

/** Pushes pending ops and reads the server's cart: the snapshot, or a rejection. */
async function syncing(d) {
  if (d.localOnly()) return d.snapshot();
  const stop = await pushAll(d);
  if (stop) throw stop;
  const request = d.pullRequest();
  if (request) {
    const e = await ask(d, request);
    if (e) throw e;
    await lookingUp(d);
  }
  return d.snapshot();
}

export const syncNow = task(syncing);

/** A sync the page did not ask for (a client's first): its failure is only in `lastError`. */
export function background(d) {
  syncNow(d).catch(() => {});
}

/** Merges the guest cart into the user's (or reads the user's cart, if another tab logged in). */
export const login = task(async (d, token, policy) => {
  // A merge carries one batch of guest ops: more than that are pushed as a guest first.
  if (d.loginPushesFirst()) await pushAll(d);
  const e = await ask(d, d.loginRequest(token, policy));
  if (e) throw e;
  // Ops queued beyond the merge's batch, or held back while the old token was refused, go to
  // the user's cart now, in a task of their own.
  pushTask(d.task());
  return d.snapshot();
});

const pushTask = task(pushAll);

/** One checkout: push, then `POST /v1/cart/checkout`; the order, or a rejection. The module
 * settles its key by the answer; the order is read here, as `extendHold` and `cancelOrder` read
 * theirs. */
export const checkout = task(async (d, id, args) => {
  try {
    await syncing(d);
    const request = d.checkoutRequest(args);
    const answer = await exchange(request);
    const e = d.answer(request[4], answer);
    if (e) throw e;
    let order;
    try {
      order = JSON.parse(answer[1]).order;
    } catch {
      // Below.
    }
    if (!order || typeof order !== "object" || typeof order.id !== "string") {
      throw new CartError("unavailable", "unreadable answer: no order");
    }
    return camelAnswer(order);
  } finally {
    d.checkoutOver(id);
  }
});

/** Tells a page's other clients of the same cart of a write, later. */
export function tellLater(drivers) {
  queueMicrotask(() => {
    for (const d of drivers) d.heardWrite();
  });
}

/** The push-or-fold timer: one function per client, made at its first timer (a function made per
 * burst of changes cost the first change after each fold a few microseconds). */
export function arm(d, ms) {
  setTimeout((d.tickFn ??= () => d.tick()), ms);
}

/** Listens for other tabs' writes of the cart under `key` (its base record, a tab's log, or
 * everything: `localStorage.clear()`) and for the page coming back online; returns the function
 * that stops, or undefined where the global has no events (Node). */
export function listen(d, key) {
  const g = globalThis;
  if (typeof g.addEventListener !== "function") return undefined;
  const logs = `${key}:o:`;
  const onStorage = (e) => {
    if (e.key == null || e.key === key || e.key.startsWith(logs)) d.heardWrite();
  };
  const onOnline = () => d.wake();
  g.addEventListener("storage", onStorage);
  g.addEventListener("online", onOnline);
  return () => {
    g.removeEventListener("storage", onStorage);
    g.removeEventListener("online", onOnline);
  };
}

/** The function `subscribe` returns: it takes listener `id` off the client. */
export function unsubscriber(d, id) {
  return () => d.unsubscribe(id);
}
