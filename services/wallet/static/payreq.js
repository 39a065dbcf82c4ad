/**
 * `pybtc:` payment requests (docs/wallet.md): `pybtc:<address>?amount=<pyBTC>&label=<text>`,
 * like Bitcoin's BIP 21. The wallet service writes them (GET /api/payment-request); this module
 * reads one pasted into the send form. Only the shape is checked here: the caller still checks
 * the address (its checksum) as it checks a typed one.
 */
import { parseAmount } from "./pybtc-crypto.js";

export const MAX_LABEL = 100;

/** Whether `text` is meant as a payment request (rather than a bare address). */
export function isPaymentRequest(text) {
  return /^pybtc:/i.test(text.trim());
}

function decoded(value, name) {
  try {
    return decodeURIComponent(value);
  } catch {
    throw new Error(`its ${name} is not percent-encoded right`);
  }
}

/**
 * `{address, amount (units, a BigInt, or null), label (or "")}` of a `pybtc:` URI; an Error
 * saying what is wrong otherwise.
 */
export function parsePaymentRequest(text) {
  const trimmed = text.trim();
  if (!isPaymentRequest(trimmed)) throw new Error("it does not start with pybtc:");
  const rest = trimmed.slice("pybtc:".length);
  const mark = rest.indexOf("?");
  const address = mark < 0 ? rest : rest.slice(0, mark);
  if (!address) throw new Error("it names no address");
  const seen = new Map();
  if (mark >= 0 && rest.length > mark + 1) {
    for (const part of rest.slice(mark + 1).split("&")) {
      const eq = part.indexOf("=");
      const name = eq < 0 ? part : part.slice(0, eq);
      if (seen.has(name)) throw new Error(`it gives ${name} twice`);
      seen.set(name, eq < 0 ? "" : decoded(part.slice(eq + 1), name));
    }
  }
  for (const name of seen.keys()) {
    if (name.startsWith("req-")) {
      throw new Error(`it requires "${name}", which this wallet does not know`);
    }
  }
  let amount = null;
  if (seen.has("amount")) {
    try {
      amount = parseAmount(seen.get("amount"));
    } catch (error) {
      throw new Error(`its amount is not right: ${error.message}`);
    }
    if (amount === 0n) throw new Error("its amount is zero");
  }
  const label = seen.get("label") ?? "";
  if (label.length > MAX_LABEL) throw new Error(`its label is longer than ${MAX_LABEL} characters`);
  if (/[\u0000-\u001f\u007f]/.test(label)) throw new Error("its label holds a control character");
  return { address, amount, label };
}
