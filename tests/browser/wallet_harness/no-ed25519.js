// Plays a browser whose Web Crypto has SHA-256, PBKDF2 and AES-GCM but not Ed25519 (Ed25519
// came to Web Crypto years after the rest): every Ed25519 key operation is refused the way such
// a browser refuses it. Loaded as a classic script before the module.
(() => {
  const subtle = crypto.subtle;
  const algorithmArgument = { generateKey: 0, importKey: 2 };
  for (const [name, index] of Object.entries(algorithmArgument)) {
    const original = subtle[name].bind(subtle);
    subtle[name] = (...args) => {
      const algorithm = args[index];
      if ((algorithm?.name ?? algorithm) === "Ed25519") {
        return Promise.reject(new DOMException("Algorithm: Unrecognized name", "NotSupportedError"));
      }
      return original(...args);
    };
  }
})();
