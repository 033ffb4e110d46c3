/**
 * Gradient registrations, Node flavour: tfjs-core's CommonJS build registers none and its ES
 * modules cannot be loaded beside it, so the union package (which registers them all) is loaded.
 * Chosen through package.json "imports" (#tfjs-gradients); browsers get gradients_browser.ts.
 */
import '@tensorflow/tfjs';
