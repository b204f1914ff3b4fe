// Loaded before every test file: the libp2p polyfill must come first.
import '../src/common/polyfill.js'
