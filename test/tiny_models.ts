/**
 * The small image-model configs the tests build: one-channel 28×28 images and 10 classes, two
 * stages, unless a test names what differs. Each test still states every value it depends on.
 */
import { mobilenetV2Config } from '../src/models/mobilenetv2.js';
import { padResNetConfig } from '../src/models/pad_resnet.js';
import { resnetConfig } from '../src/models/resnet.js';

const IMAGES = { inChannels: 1, imageSize: 28, classes: 10 };

/** MobileNetV2 rows [t, c, n, s]: a 1× stage of 8 channels, then a 4× one of 12 with stride 2. */
const TWO_ROWS: [number, number, number, number][] = [
  [1, 8, 1, 1],
  [4, 12, 2, 2],
];

export const tinyResNet = (o: Partial<Parameters<typeof resnetConfig>[0]> = {}) =>
  resnetConfig({ ...IMAGES, stem: 4, widths: [4, 8], blocks: [1, 1], ...o });

export const tinyPadResNet = (o: Partial<Parameters<typeof padResNetConfig>[0]> = {}) =>
  padResNetConfig({ ...IMAGES, stem: 4, widths: [4, 8], blocks: [1, 1], kernels: 3, ...o });

export const tinyMobileNetV2 = (o: Partial<Parameters<typeof mobilenetV2Config>[0]> = {}) =>
  mobilenetV2Config({ ...IMAGES, stem: 8, rows: TWO_ROWS, last: 16, ...o });
