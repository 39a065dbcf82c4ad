/**
 * The browser wallet. The key is made, encrypted, decrypted and used only here: the page keeps
 * the encrypted wallet file in localStorage ("pybtc-wallet:<network>"), the unlocked key only
 * in this module's memory (a reload locks the wallet again), and sends the server nothing but
 * signed transactions, addresses and faucet requests.
 */
import * as crypto from "./pybtc-crypto.js";
import { isPaymentRequest, parsePaymentRequest } from "./payreq.js";
import {
  api,
  coins,
  copyButtons,
  followNode,
  pageHistory,
  renderAccount,
  statusText,
} from "./wallet-ui.js";

const network = document.body.dataset.network;
const STORE = `pybtc-wallet:${network}`;
const $ = (id) => document.getElementById(id);

let params = null; // GET /api/params
let key = null; // {seed, publicKey, address} while unlocked
let account = null; // the last GET /api/address answer
let review = null; // the transfer waiting for confirmation
let fees = null; // GET /api/fees: the ledger's fee suggestions, or null when it has none
let request = { label: "" }; // the payment request pasted into the send form
const secure = crypto.hasSubtleCrypto(); // SHA-256, PBKDF2, AES-GCM: storage and backups

// -- which state the page is in ---------------------------------------------------------------

function show(section) {
  for (const id of ["setup", "unlock", "account"]) $(id).hidden = id !== section;
}

function storedWallet() {
  const text = localStorage.getItem(STORE);
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function busy(button, on) {
  button.disabled = on;
}

async function addressOf(publicKey) {
  if (secure) return crypto.addressFromPublicKey(publicKey);
  return (await api(`/api/address-of-key/${crypto.bytesToHex(publicKey)}`)).address;
}

async function checkAddress(text) {
  if (secure) return crypto.checkAddress(text);
  return api(`/api/check-address/${encodeURIComponent(text)}`);
}

function explainMode() {
  const banner = $("mode-banner");
  const mode = crypto.cryptoMode();
  if (mode === "webcrypto") return;
  banner.hidden = false;
  if (mode === "fallback") {
    banner.textContent =
      "This page is not a secure context (it is plain HTTP on a host other than localhost), so " +
      "the browser's Web Crypto is missing. Keys are made and used with the bundled tweetnacl " +
      "library instead, and kept only while this tab is open: a wallet cannot be stored or " +
      "backed up here. Open the wallet at http://localhost:8081 or over HTTPS to keep one.";
  } else {
    banner.textContent =
      "This browser has no Ed25519 signing available to this page: the wallet cannot work here. " +
      "You can still view any address with the box above.";
    for (const id of ["create-btn", "import-btn", "unlock-btn"]) $(id).disabled = true;
  }
}

// -- create, import, unlock, lock, remove -------------------------------------------------

async function openWallet(unlocked) {
  // the address first: a live update arriving meanwhile must not read an address-less key
  if (!unlocked.address) unlocked.address = await addressOf(unlocked.publicKey);
  key = unlocked;
  $("address").textContent = key.address;
  $("qr").src = `/qr/${key.address}.svg`;
  const stored = localStorage.getItem(STORE);
  const exportLink = $("export-btn");
  if (stored) {
    exportLink.hidden = false;
    exportLink.href = URL.createObjectURL(new Blob([stored], { type: "application/json" }));
    exportLink.download = `pybtc-wallet-${network}-${key.address.slice(0, 10)}.json`;
  } else {
    exportLink.hidden = true;
  }
  $("faucet-btn").hidden = !params.faucet.enabled;
  $("send-fee").value = coins(params.default_fee);
  show("account");
  await refresh();
  await loadFees();
}

$("create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = $("create-msg");
  const pass = $("create-pass").value;
  message.textContent = "";
  if (secure && pass.length < 8) {
    message.textContent = "Use a passphrase of at least 8 characters.";
    return;
  }
  if (pass !== $("create-pass2").value) {
    message.textContent = "The two passphrases differ.";
    return;
  }
  busy($("create-btn"), true);
  try {
    const made = await crypto.generateKey();
    if (secure) {
      const file = await crypto.encryptWallet(made, pass, network);
      localStorage.setItem(STORE, JSON.stringify(file));
    }
    $("create-pass").value = $("create-pass2").value = "";
    await openWallet(made);
  } catch (error) {
    message.textContent = error.message;
  } finally {
    busy($("create-btn"), false);
  }
});

$("import-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = $("import-msg");
  message.textContent = "";
  const file = $("import-file").files[0];
  if (!file) {
    message.textContent = "Choose the backup file first.";
    return;
  }
  busy($("import-btn"), true);
  try {
    if (file.size > 65536) throw new Error("That file is far too large to be a wallet backup.");
    let doc;
    try {
      doc = JSON.parse(await file.text());
    } catch {
      throw new Error("That file is not a wallet backup (it is not JSON).");
    }
    const opened = await crypto.decryptWallet(doc, $("import-pass").value, network);
    localStorage.setItem(STORE, JSON.stringify(doc));
    $("import-pass").value = "";
    await openWallet(opened);
  } catch (error) {
    message.textContent = error.message;
  } finally {
    busy($("import-btn"), false);
  }
});

$("unlock-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const message = $("unlock-msg");
  message.textContent = "";
  busy($("unlock-btn"), true);
  try {
    const opened = await crypto.decryptWallet(storedWallet(), $("unlock-pass").value, network);
    $("unlock-pass").value = "";
    await openWallet(opened);
  } catch (error) {
    message.textContent = error.message;
  } finally {
    busy($("unlock-btn"), false);
  }
});

$("lock-btn").addEventListener("click", () => {
  window.location.reload(); // the key lives only in this page's memory
});

$("remove-btn").addEventListener("click", () => {
  localStorage.removeItem(STORE);
  window.location.reload();
});

// -- balance and history ----------------------------------------------------------------------

/**
 * Messages about one transaction (the faucet's payment, a sent transfer) that follow it: each
 * refresh rewrites them from the history, so none still says "pending" once it is confirmed.
 */
const tracked = new Map(); // txid -> the element holding its status

function track(txid, element) {
  tracked.set(txid, element);
}

function followTracked() {
  for (const [txid, element] of tracked) {
    if (!element.isConnected) {
      tracked.delete(txid); // replaced by a newer message
      continue;
    }
    const entry = account.history.find((e) => e.txid === txid);
    if (!entry) continue; // not on this page of the history: leave it as it is
    // "in block N" stays true as blocks come, where "1 confirmation" would not
    element.textContent =
      entry.status === "confirmed" ? `Confirmed in block ${entry.height}` : statusText(entry);
    element.className = `status-${entry.status}`;
  }
}

async function refresh(offset = currentOffset()) {
  if (!key) return;
  try {
    account = await api(`/api/address/${key.address}?offset=${offset}`);
    renderAccount(account);
    followTracked();
  } catch (error) {
    $("live-state").textContent = `could not read the ledger: ${error.message}`;
  }
}

const currentOffset = pageHistory((offset) => refresh(offset));

/** Refresh on every announcement: the balance and history, and the fee suggestions. */
async function onNode() {
  await refresh();
  await loadFees();
}

// -- faucet -----------------------------------------------------------------------------------

let faucetTimer = null;

/** The faucet said "not yet": count the wait down, then offer the button again. */
function faucetWait(seconds) {
  const button = $("faucet-btn");
  const message = $("faucet-wait");
  let left = Math.max(1, seconds);
  clearInterval(faucetTimer);
  const tick = () => {
    if (left <= 0) {
      clearInterval(faucetTimer);
      button.disabled = false;
      message.hidden = true;
      message.textContent = "";
      return;
    }
    button.disabled = true;
    message.hidden = false;
    message.textContent = `The faucet paid this address recently: try again in ${left} s.`;
    left -= 1;
  };
  tick();
  faucetTimer = setInterval(tick, 1000);
}

$("faucet-btn").addEventListener("click", async () => {
  const message = $("faucet-msg");
  const button = $("faucet-btn");
  button.disabled = true;
  message.className = "small";
  try {
    const paid = await api("/api/faucet", { address: key.address });
    const status = document.createElement("span");
    status.id = "faucet-status";
    status.textContent = "Pending";
    message.replaceChildren(`The faucet sent ${coins(paid.amount)} pyBTC: `, status);
    track(paid.txid, status);
    button.disabled = false;
    await refresh();
  } catch (error) {
    const wait = Number.parseInt(error.retryAfter ?? "", 10);
    if (error.status === 429 && wait > 0) {
      faucetWait(wait);
      return;
    }
    message.className = "small field-error";
    message.textContent = error.message;
    button.disabled = false;
  }
});

// -- send -------------------------------------------------------------------------------------

function fieldError(input, messageId, text) {
  $(messageId).textContent = text || "";
  input.classList.toggle("bad", Boolean(text));
  input.classList.toggle("good", !text && input.value !== "");
}

function amountOf(input, messageId, what) {
  try {
    const units = crypto.parseAmount(input.value.trim());
    fieldError(input, messageId, "");
    return units;
  } catch (error) {
    fieldError(input, messageId, `${what}: ${error.message}`);
    return null;
  }
}

function showLabel(label) {
  request = { label };
  $("send-label").hidden = !label;
  $("send-label").textContent = label ? `Payment request: “${label}”` : "";
}

/** A `pybtc:` URI in the recipient field: fill recipient and amount from it, or say why not. */
async function applyRequest() {
  const input = $("send-to");
  let parsed;
  try {
    parsed = parsePaymentRequest(input.value);
  } catch (error) {
    fieldError(input, "to-msg", `That payment request is not right: ${error.message}.`);
    return false;
  }
  const checked = await checkAddress(parsed.address);
  if (!checked.ok) {
    fieldError(input, "to-msg", `That payment request is not right: its address: ${checked.message}.`);
    return false;
  }
  input.value = parsed.address;
  if (parsed.amount !== null) $("send-amount").value = coins(parsed.amount);
  showLabel(parsed.label);
  await checkRecipient();
  if (parsed.amount !== null) amountOf($("send-amount"), "amount-msg", "Amount");
  return true;
}

async function checkRecipient() {
  const input = $("send-to");
  const text = input.value.trim();
  if (!text) {
    fieldError(input, "to-msg", "Enter the address to send to.");
    return null;
  }
  if (isPaymentRequest(text)) {
    return (await applyRequest()) ? input.value : null;
  }
  const checked = await checkAddress(text);
  if (!checked.ok) {
    fieldError(input, "to-msg", `That address is not right: ${checked.message}.`);
    return null;
  }
  if (text === key.address) {
    fieldError(input, "to-msg", "That is your own address: sending to yourself only costs a fee.");
    return null;
  }
  fieldError(input, "to-msg", "");
  return text;
}

/** Every check of the send form; the transfer, or null with the errors shown inline. */
async function validTransfer() {
  const recipient = await checkRecipient();
  const amount = amountOf($("send-amount"), "amount-msg", "Amount");
  const fee = amountOf($("send-fee"), "fee-msg", "Fee");
  if (amount === null || fee === null) return null;
  if (amount === 0n) {
    fieldError($("send-amount"), "amount-msg", "Amount: send more than zero.");
    return null;
  }
  if (fee < BigInt(params.min_fee)) {
    fieldError($("send-fee"), "fee-msg", `Fee: this node relays fees of at least ${coins(params.min_fee)} pyBTC.`);
    return null;
  }
  const spendable = BigInt(account.spendable);
  if (amount + fee > spendable) {
    fieldError(
      $("send-amount"),
      "amount-msg",
      `Amount: more than you can spend — ${coins(spendable)} pyBTC spendable now, fee included.`,
    );
    return null;
  }
  if (recipient === null) return null;
  return { recipient, amount, fee, nonce: account.next_nonce };
}

$("send-to").addEventListener("input", () => {
  const text = $("send-to").value.trim();
  if (!isPaymentRequest(text)) showLabel("");
  if (isPaymentRequest(text) || text.length >= 30) checkRecipient();
});
$("send-to").addEventListener("change", checkRecipient);
$("send-amount").addEventListener("input", () => amountOf($("send-amount"), "amount-msg", "Amount"));
$("send-fee").addEventListener("input", () => {
  amountOf($("send-fee"), "fee-msg", "Fee");
  markFee();
});

// -- fee suggestions (GET /fees of the ledger: the miner's own order) ---------------------------

const FEE_NAMES = { next_block: "Next block", economy: "Economy", minimum: "Minimum" };

let chosenFee = null; // the suggestion last clicked

/** The suggestion the fee field holds, pressed (the one clicked when several are equal). */
function markFee() {
  const value = $("send-fee").value.trim();
  const buttons = [...document.querySelectorAll("#fee-choices button")];
  const matches = (b) => fees !== null && value === coins(fees[b.dataset.fee]);
  const pressed =
    buttons.find((b) => b.dataset.fee === chosenFee && matches(b)) ?? buttons.find(matches);
  for (const button of buttons) button.setAttribute("aria-pressed", String(button === pressed));
}

async function loadFees() {
  try {
    fees = await api("/api/fees");
  } catch {
    fees = null; // a ledger without GET /fees: the fee field alone
  }
  $("fee-choices").hidden = fees === null;
  if (fees === null) {
    $("fee-note").textContent = "";
    return;
  }
  for (const button of document.querySelectorAll("#fee-choices button")) {
    button.textContent = `${FEE_NAMES[button.dataset.fee]} · ${coins(fees[button.dataset.fee])}`;
  }
  $("fee-note").textContent =
    `As the mempool stands now: "next block" gets it into the next block, "economy" within ` +
    `about 3 (a block holds ${fees.capacity} transactions).`;
  markFee();
}

for (const button of document.querySelectorAll("#fee-choices button")) {
  button.addEventListener("click", () => {
    if (fees === null) return;
    chosenFee = button.dataset.fee;
    $("send-fee").value = coins(fees[button.dataset.fee]);
    amountOf($("send-fee"), "fee-msg", "Fee");
    markFee();
  });
}

$("send-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("send-result").textContent = "";
  await refresh(); // the balance and the nonce as they are now
  review = await validTransfer();
  if (!review) return;
  $("confirm-to").textContent = review.recipient;
  $("confirm-amount").textContent = `${coins(review.amount)} pyBTC`;
  $("confirm-fee").textContent = `${coins(review.fee)} pyBTC`;
  $("confirm-total").textContent = `${coins(review.amount + review.fee)} pyBTC`;
  $("confirm-nonce").textContent = String(review.nonce);
  $("confirm-label").textContent = request.label;
  $("confirm-label-row").hidden = !request.label;
  $("send-form").hidden = true;
  $("confirm-panel").hidden = false;
});

$("confirm-cancel").addEventListener("click", () => {
  review = null;
  $("confirm-panel").hidden = true;
  $("send-form").hidden = false;
});

async function signed(transfer) {
  const fields = { ...transfer, timestamp: Math.floor(Date.now() / 1000) };
  if (secure) return crypto.signTransaction(key, fields, params.network_id);
  // No SHA-256 here: sign the same message, and let the server compute the txid.
  const tx = {
    sender: key.address,
    recipient: fields.recipient,
    amount: Number(fields.amount),
    fee: Number(fields.fee),
    nonce: fields.nonce,
    timestamp: fields.timestamp,
    public_key: crypto.bytesToHex(key.publicKey),
    signature: "",
  };
  tx.signature = crypto.bytesToHex(await crypto.sign(key, crypto.signingMessage(tx, params.network_id)));
  return tx;
}

$("confirm-send").addEventListener("click", async () => {
  const result = $("send-result");
  busy($("confirm-send"), true);
  try {
    const tx = await signed(review);
    const answer = await api("/api/broadcast", tx);
    result.className = "";
    result.replaceChildren("Sent: ");
    const link = document.createElement("a");
    link.href = answer.explorer_url;
    link.className = "mono txid";
    link.id = "sent-txid";
    link.textContent = answer.txid;
    const status = document.createElement("span");
    status.id = "sent-status";
    status.className = "status-pending";
    status.textContent = statusText({ status: "pending", ...answer });
    result.append(link, " ", status);
    track(answer.txid, status);
    for (const id of ["send-to", "send-amount"]) {
      $(id).value = "";
      $(id).classList.remove("good", "bad");
    }
    showLabel("");
    await refresh();
  } catch (error) {
    result.className = "field-error";
    result.textContent = `Not sent: ${error.message}`;
  } finally {
    review = null;
    busy($("confirm-send"), false);
    $("confirm-panel").hidden = true;
    $("send-form").hidden = false;
  }
});

// -- payment request ----------------------------------------------------------------------------

$("request-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const amountInput = $("request-amount");
  const text = amountInput.value.trim();
  let amount = null;
  if (text) {
    amount = amountOf(amountInput, "request-amount-msg", "Amount");
    if (amount === null) return;
    if (amount === 0n) {
      fieldError(amountInput, "request-amount-msg", "Amount: ask for more than zero, or leave it empty.");
      return;
    }
  } else {
    fieldError(amountInput, "request-amount-msg", "");
  }
  const query = new URLSearchParams({ address: key.address, label: $("request-label").value });
  if (amount !== null) query.set("amount", text);
  try {
    const made = await api(`/api/payment-request?${query}`);
    fieldError($("request-label"), "request-label-msg", "");
    $("request-uri").textContent = made.uri;
    $("request-qr").src = made.qr;
    $("request-out").hidden = false;
  } catch (error) {
    const field = error.reason === "bad-label" ? "request-label" : "request-amount";
    fieldError($(field), `${field}-msg`, error.message);
    $("request-out").hidden = true;
  }
});

// -- start ------------------------------------------------------------------------------------

async function start() {
  explainMode();
  params = await api("/api/params");
  const stored = secure ? storedWallet() : null;
  if (stored) {
    $("locked-address").textContent = stored.address;
    show("unlock");
  } else {
    show("setup");
    if (!secure) $("import-form").hidden = true;
  }
  copyButtons();
  followNode(onNode);
}

start();
