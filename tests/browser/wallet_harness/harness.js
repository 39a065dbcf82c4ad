// The browser tests' window onto pybtc-crypto.js: `window.c` is the module, `window.attempt(f)`
// runs an async function and returns {value} or {error, name} (so expected refusals never
// reach the console), and <html data-mode> says the module has loaded.
import * as c from "/pybtc-crypto.js";

window.c = c;
window.attempt = async (f) => {
  try {
    return { value: await f() };
  } catch (error) {
    return { error: error.message, name: error.name };
  }
};
document.documentElement.dataset.mode = c.cryptoMode();
