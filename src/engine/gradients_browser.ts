/**
 * Gradient registrations, browser flavour: tfjs-core's own ES module, without the layers,
 * converter and WebGL packages that `@tensorflow/tfjs` would bring into a bundle.
 */
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
