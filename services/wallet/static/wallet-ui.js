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

function cell(row, text, className, label) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  if (label) td.dataset.label = label; // the column's name, shown beside the value on a phone
  return td;
}

const DROP_REASONS = {
  "bad-nonce": "another transaction with its nonce is in the best chain",
  "insufficient-funds": "the coins were no longer there after a reorg",
  "replaced": "replaced by a transaction with the same nonce and a higher fee",
  "mempool-full": "the mempool was full and it paid the lowest fee",
};

/** Why a transaction was dropped, in words. */
export function dropReason(reason) {
  return DROP_REASONS[reason] || reason || "no longer valid";
}

function waitText(blocks) {
  if (!blocks) return "";
  return blocks === 1 ? " · next block" : ` · in about ${blocks} blocks`;
}

/** One history entry's status in words. */
export function statusText(entry) {
  if (entry.status === "confirmed") {
    return `Confirmed · ${entry.confirmations} confirmation${entry.confirmations === 1 ? "" : "s"}`;
  }
  if (entry.status === "pending") {
    const requeued = entry.fate?.fate === "requeued" ? "Re-queued after a reorg · " : "";
    const place = entry.mempool_position ? ` · position ${entry.mempool_position} in the mempool` : "";
    return `${requeued}Pending${place}${waitText(entry.blocks_to_wait)}`;
  }
  if (entry.status === "dropped") {
    const when = entry.fate?.reorg ? " after a reorg" : "";
    return `Dropped${when}: ${dropReason(entry.fate?.reason)}`;
  }
  return entry.status;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** Unix seconds as local "YYYY-MM-DD HH:MM" (the exact UTC time goes in the title). */
export function dateText(seconds) {
  const d = new Date(seconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** "3 min ago" for unix seconds. */
export function ageText(seconds) {
  const age = Math.max(0, Math.floor(Date.now() / 1000) - seconds);
  if (age < 60) return `${age} s ago`;
  if (age < 3600) return `${Math.floor(age / 60)} min ago`;
  if (age < 86400) return `${Math.floor(age / 3600)} h ago`;
  return `${Math.floor(age / 86400)} d ago`;
}

function shortAddress(address) {
  return address.length > 14 ? `${address.slice(0, 8)}…${address.slice(-6)}` : address;
}

function counterpartyCell(row, entry, mine) {
  const td = row.insertCell();
  td.dataset.label = "Counterparty";
  const other = entry.counterparty;
  if (other === undefined) {
    td.textContent = "—";
  } else if (other === "coinbase") {
    td.textContent = "Mining reward";
  } else if (other === mine) {
    td.textContent = "Yourself";
  } else {
    const link = document.createElement("a");
    link.href = `/address/${encodeURIComponent(other)}`;
    link.className = "mono counterparty";
    link.title = other;
    link.textContent = shortAddress(other);
    const words = document.createElement("span"); // one flex item on a phone's card
    words.append(entry.delta < 0 ? "to " : "from ", link);
    td.append(words);
  }
}

function historyRow(body, entry, mine, explorer) {
  const row = body.insertRow();
  row.dataset.txid = entry.txid;
  row.dataset.status = entry.status;
  cell(row, statusText(entry), `status-${entry.status}`, "Status");
  const when = { confirmed: entry.block_time, dropped: entry.fate?.at }[entry.status] ?? entry.timestamp;
  const date = cell(row, when === undefined ? "—" : dateText(when), "nowrap", "Date");
  if (when !== undefined) date.title = `${new Date(when * 1000).toISOString()} · ${ageText(when)}`;
  counterpartyCell(row, entry, mine);
  const delta = entry.delta === undefined ? "—" : coins(entry.delta, true);
  cell(row, delta, `num ${entry.delta < 0 ? "minus" : "plus"}`, "Amount");
  // a dropped entry names no sender: only the sender's delta is below zero
  const paidFee = entry.fee !== undefined && (entry.sender ?? (entry.delta < 0 ? mine : "")) === mine;
  cell(row, paidFee ? coins(entry.fee) : "—", "num", "Fee");
  const after = entry.balance_after === undefined ? "—" : coins(entry.balance_after);
  cell(row, after, "num", "Balance after");
  const td = row.insertCell();
  td.dataset.label = "Transaction";
  const link = document.createElement("a");
  link.href = `${explorer}/tx/${entry.txid}`;
  link.textContent = `${entry.txid.slice(0, 16)}…`;
  link.className = "mono txid";
  link.title = entry.txid;
  td.append(link);
}

/** Draw an account (from GET /api/address/...) into the page's balance and history parts. */
export function renderAccount(account) {
  document.getElementById("spendable").textContent = coins(account.spendable);
  document.getElementById("balance").textContent = coins(account.balance);
  document.getElementById("unconfirmed").textContent = coins(account.unconfirmed_balance);
  document.getElementById("next-nonce").textContent = String(account.next_nonce);
  const explorer = document.body.dataset.explorer;
  const body = document.querySelector("#history tbody");
  body.replaceChildren();
  for (const entry of account.history) historyRow(body, entry, account.address, explorer);
  if (!account.history.length) {
    const row = body.insertRow();
    const td = cell(row, "No transactions yet.", "muted empty");
    td.colSpan = 7;
  }
  const older = document.getElementById("history-older");
  const newer = document.getElementById("history-newer");
  older.hidden = account.offset + account.page_size >= account.history_total;
  newer.hidden = account.offset === 0;
}

/** Buttons with `data-copy-from="<id>"` copy that element's text, and say so for a moment. */
export function copyButtons() {
  for (const button of document.querySelectorAll("button[data-copy-from]")) {
    const label = button.textContent;
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copyFrom).textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        // no clipboard here (not a secure context): select it for Ctrl-C instead
        const range = document.createRange();
        range.selectNodeContents(document.getElementById(button.dataset.copyFrom));
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
        button.textContent = "Selected: press Ctrl-C";
      }
      setTimeout(() => {
        button.textContent = label;
      }, 2000);
    });
  }
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
