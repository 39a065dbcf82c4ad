/**
 * What the wallet page and the watch-only page share: reading an address from the wallet's
 * API, drawing balances and history (DOM nodes and textContent only: nothing from the chain is
 * ever parsed as HTML), and live updates from /events.
 */

const UNITS = 100_000_000n;

/** Integer units (a JSON number) as pyBTC with eight decimals, signed when asked. */
export function coins(units, signed = false) {
  const n = BigInt(units);
  const abs = n < 0n ? -n : n;
  const text = `${abs / UNITS}.${(abs % UNITS).toString().padStart(8, "0")}`;
  if (n < 0n) return `−${text}`;
  return signed && n > 0n ? `+${text}` : text;
}

/** The CSRF token the page was served with (docs/wallet.md). */
export function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]').content;
}

/** JSON from the wallet's API; a refusal becomes an Error carrying `reason` and `status`. */
export async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
    body: JSON.stringify(body),
  };
  const resp = await fetch(path, init);
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const error = new Error(data?.error || `the wallet service answered ${resp.status}`);
    error.reason = data?.reason;
    error.status = resp.status;
    error.retryAfter = resp.headers.get("Retry-After");
    throw error;
  }
  return data;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

const DROP_REASONS = {
  "bad-nonce": "another transaction with its nonce is in the best chain",
  "insufficient-funds": "the coins were no longer there after a reorg",
  "replaced": "replaced by a transaction with the same nonce",
  "mempool-full": "the mempool was full",
};

/** One history entry's status in words. */
export function statusText(entry) {
  if (entry.status === "confirmed") {
    return `Confirmed · ${entry.confirmations} confirmation${entry.confirmations === 1 ? "" : "s"}`;
  }
  if (entry.status === "pending") {
    const requeued = entry.fate?.fate === "requeued" ? "Re-queued after a reorg · " : "";
    const place = entry.mempool_position ? ` · position ${entry.mempool_position} in the mempool` : "";
    return `${requeued}Pending${place}`;
  }
  if (entry.status === "dropped") {
    const why = DROP_REASONS[entry.fate?.reason] || entry.fate?.reason || "no longer valid";
    const when = entry.fate?.reorg ? " after a reorg" : "";
    return `Dropped${when}: ${why}`;
  }
  return entry.status;
}

/** Draw an account (from GET /api/address/...) into the page's balance and history parts. */
export function renderAccount(account, extra = []) {
  document.getElementById("balance").textContent = coins(account.balance);
  document.getElementById("unconfirmed").textContent = coins(account.unconfirmed_balance);
  document.getElementById("next-nonce").textContent = String(account.next_nonce);
  const explorer = document.body.dataset.explorer;
  const body = document.querySelector("#history tbody");
  body.replaceChildren();
  const entries = [...extra, ...account.history];
  for (const entry of entries) {
    const row = body.insertRow();
    row.dataset.txid = entry.txid;
    row.dataset.status = entry.status;
    cell(row, statusText(entry), `status-${entry.status}`);
    const link = document.createElement("a");
    link.href = `${explorer}/tx/${entry.txid}`;
    link.textContent = `${entry.txid.slice(0, 20)}…`;
    link.className = "mono";
    row.insertCell().append(link);
    const delta = entry.delta === undefined ? "—" : coins(entry.delta, true);
    cell(row, delta, `num ${entry.delta < 0 ? "minus" : "plus"}`);
  }
  if (!entries.length) {
    const row = body.insertRow();
    const td = cell(row, "No transactions yet.", "muted");
    td.colSpan = 3;
  }
  const older = document.getElementById("history-older");
  const newer = document.getElementById("history-newer");
  older.hidden = account.offset + account.page_size >= account.history_total;
  newer.hidden = account.offset === 0;
}

/** Call `refresh` on every announcement from the node (debounced), and after reconnecting. */
export function followNode(refresh) {
  const state = document.getElementById("live-state");
  let timer = null;
  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  };
  const source = new EventSource("/events");
  source.addEventListener("hello", () => {
    state.textContent = "live updates: on";
    soon();
  });
  for (const kind of ["block", "tip", "tx", "reorg", "resync"]) {
    source.addEventListener(kind, soon);
  }
  source.onerror = () => {
    state.textContent = "live updates: reconnecting…";
  };
  window.addEventListener("pagehide", () => source.close());
  return source;
}

/** History paging buttons: `load(offset)` redraws. */
export function pageHistory(load) {
  let offset = 0;
  document.getElementById("history-older").addEventListener("click", () => {
    offset += 25;
    load(offset);
  });
  document.getElementById("history-newer").addEventListener("click", () => {
    offset = Math.max(0, offset - 25);
    load(offset);
  });
  return () => offset;
}
