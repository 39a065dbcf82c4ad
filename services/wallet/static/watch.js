/** The watch-only page: an address's balance and history, kept up to date. */
import { api, copyButtons, followNode, pageHistory, renderAccount } from "./wallet-ui.js";

const address = document.getElementById("address").dataset.address;

async function load(offset = currentOffset()) {
  try {
    renderAccount(await api(`/api/address/${address}?offset=${offset}`));
  } catch (error) {
    document.getElementById("live-state").textContent = `could not read the ledger: ${error.message}`;
  }
}

const currentOffset = pageHistory(load);
copyButtons();
followNode(() => load());
load(0);
