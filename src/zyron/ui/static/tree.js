// A conversation is a tree: each message names its parent, an edit or a regenerate adds a sibling.
// The page shows one path from the first message to a leaf; these helpers move along it.

/** Messages by id, with their children in the order they were made. */
export class Tree {
  constructor(messages = []) {
    this.byId = new Map();
    for (const message of messages) this.add(message);
  }

  /** Add a message and return it; one made here is stamped after every message known. */
  add(message) {
    const newest = this.newest();
    message.at ??= message.created_at ? instant(message.created_at) : Math.max(Date.now(), (newest?.at ?? 0) + 1);
    message.seq ??= this.byId.size; // ties (a reply stamped 1 µs after its question) keep this order
    this.byId.set(message.id, message);
    return message;
  }

  get(id) {
    return this.byId.get(id);
  }

  /** The children of `parentId` (null: the first messages), oldest first. */
  children(parentId) {
    return [...this.byId.values()]
      .filter((m) => (m.parent_id ?? null) === parentId)
      .sort(byTime);
  }

  /** The message and its siblings, oldest first. */
  siblings(id) {
    return this.children(this.get(id).parent_id ?? null);
  }

  /** The newest message of all: the server's active branch ends there. */
  newest() {
    let newest = null;
    for (const message of this.byId.values()) {
      if (newest === null || byTime(message, newest) > 0) newest = message;
    }
    return newest;
  }

  /** From `id` down to a leaf, taking the newest child each time: where a branch now ends. */
  leafUnder(id) {
    let leaf = id;
    for (let kids = this.children(leaf); kids.length; kids = this.children(leaf)) {
      leaf = kids[kids.length - 1].id;
    }
    return leaf;
  }

  /** The messages from the first one to `leafId`, in order. */
  path(leafId) {
    const path = [];
    for (let m = this.get(leafId); m; m = m.parent_id ? this.get(m.parent_id) : undefined) {
      path.push(m);
    }
    return path.reverse();
  }
}

function byTime(a, b) {
  return a.at - b.at || a.seq - b.seq;
}

/** Milliseconds since 1970 of an ISO time, microseconds kept (Date.parse drops them). */
function instant(iso) {
  const [, whole, fraction = "0", zone] = iso.match(/^(.*?:\d\d)(?:\.(\d+))?(.*)$/);
  return Date.parse(whole + zone) + Number(`0.${fraction}`) * 1000;
}
