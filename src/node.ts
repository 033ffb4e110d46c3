/**
 * sortednet in Node: everything of the browser entry, plus what needs a file system or the
 * native kernels: training runs, datasets from disk, checkpoints in folders, and `loadModel`
 * that also takes a path.
 */
export * from './index.js';
export { loadModel } from './deploy/load_node.js';
export { engineDescription } from './engine/backend.js';
export { loadLm } from './infer/load_lm.js';
export { loadTextCorpus, loadSotu, type TextCorpus } from './data/text.js';
export {
  train,
  DivergenceError,
  type TrainOptions,
  type TrainResult,
  type TrainState,
  type StepLog,
} from './train/trainer.js';
export { trainRun, type RunOptions } from './run/train_run.js';
export {
  importHuggingFace,
  loadHfModel,
  hfToTransformerConfig,
  HfImportError,
  HF_ARCHITECTURES,
  type HfImportOptions,
  type HfImported,
} from './run/hf_import.js';
export {
  saveCheckpoint,
  loadCheckpoint,
  readCheckpointMeta,
  type LoadedCheckpoint,
} from './io/checkpoint.js';
export { loadDataset, DATASET_NAMES, type DatasetName, type LoadOptions } from './data/registry.js';
export { loadCsv, loadImageFolder, loadIdxPair, loadIdxFolder, type CsvOptions } from './data/user_data.js';
export { readImageFile, type DecodedImage } from './data/image_file.js';
export { loadMnist, loadFashionMnist, loadDigits, FASHION_MNIST_CLASSES } from './data/mnist.js';
export { importTorchvision } from './io/torchvision_node.js';
