/**
 * The browser wallet. The key is made, encrypted, decrypted and used only here: the page keeps
 * the encrypted wallet file in localStorage ("pybtc-wallet:<network>"), the unlocked key only
 * in this module's memory (a reload locks the wallet again), and sends the server nothing but
 * signed transactions, addresses and faucet requests.
 */
import * as crypto from "./pybtc-crypto.js";
import { api, coins, followNode, pageHistory, renderAccount } from "./wallet-ui.js";

const network = document.body.dataset.network;
const STORE = `pybtc-wallet:${network}`;
const $ = (id) => document.getElementById(id);

let params = null; // GET /api/params
let key = null; // {seed, publicKey, address} while unlocked
let account = null; // the last GET /api/address answer
let review = null; // the transfer waiting for confirmation
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

function sentKey() {
  return `pybtc-sent:${network}:${key.address}`;
}

function rememberSent(txid) {
  const sent = JSON.parse(localStorage.getItem(sentKey()) || "[]").filter((t) => t !== txid);
  sent.unshift(txid);
  localStorage.setItem(sentKey(), JSON.stringify(sent.slice(0, 20)));
}

const settled = new Set(); // sent txids seen confirmed: older than the history's first page

/** Transactions this browser sent that the ledger no longer lists for the address: dropped. */
async function lostSent(listed) {
  const sent = JSON.parse(localStorage.getItem(sentKey()) || "[]");
  const missing = sent.filter((txid) => !listed.has(txid) && !settled.has(txid)).slice(0, 10);
  const found = [];
  for (const txid of missing) {
    try {
      const view = await api(`/api/tx/${txid}`);
      if (view.status === "dropped") {
        found.push({ txid, status: "dropped", fate: view.fate, delta: undefined });
      } else if (view.status === "confirmed") {
        settled.add(txid); // on a later page of the history: no need to ask again
      }
    } catch {
      // not known to the node (yet, or any more): nothing to show
    }
  }
  return found;
}

async function refresh(offset = currentOffset()) {
  if (!key) return;
  try {
    account = await api(`/api/address/${key.address}?offset=${offset}`);
    const listed = new Set(account.history.map((e) => e.txid));
    renderAccount(account, offset === 0 ? await lostSent(listed) : []);
  } catch (error) {
    $("live-state").textContent = `could not read the ledger: ${error.message}`;
  }
}

const currentOffset = pageHistory((offset) => refresh(offset));

// -- faucet -----------------------------------------------------------------------------------

$("faucet-btn").addEventListener("click", async () => {
  const message = $("faucet-msg");
  busy($("faucet-btn"), true);
  message.className = "small";
  try {
    const paid = await api("/api/faucet", { address: key.address });
    message.textContent = `The faucet sent ${coins(paid.amount)} pyBTC (pending until the next block).`;
    rememberSent(paid.txid);
    await refresh();
  } catch (error) {
    message.className = "small field-error";
    message.textContent = error.message;
  } finally {
    busy($("faucet-btn"), false);
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

async function checkRecipient() {
  const input = $("send-to");
  const text = input.value.trim();
  if (!text) {
    fieldError(input, "to-msg", "Enter the address to send to.");
    return null;
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
  const spendable = BigInt(account.unconfirmed_balance);
  if (amount + fee > spendable) {
    fieldError(
      $("send-amount"),
      "amount-msg",
      `Amount: more than you can spend — ${coins(spendable)} pyBTC after pending transactions, fee included.`,
    );
    return null;
  }
  if (recipient === null) return null;
  return { recipient, amount, fee, nonce: account.next_nonce };
}

$("send-to").addEventListener("input", () => {
  if ($("send-to").value.trim().length >= 30) checkRecipient();
});
$("send-to").addEventListener("change", checkRecipient);
$("send-amount").addEventListener("input", () => amountOf($("send-amount"), "amount-msg", "Amount"));
$("send-fee").addEventListener("input", () => amountOf($("send-fee"), "fee-msg", "Fee"));

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
    rememberSent(answer.txid);
    result.className = "field-ok";
    result.replaceChildren("Sent. Transaction ");
    const link = document.createElement("a");
    link.href = answer.explorer_url;
    link.className = "mono";
    link.id = "sent-txid";
    link.textContent = answer.txid;
    result.append(link, " is pending until a block confirms it.");
    for (const id of ["send-to", "send-amount"]) {
      $(id).value = "";
      $(id).classList.remove("good", "bad");
    }
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
  followNode(() => refresh());
}

start();
