// `import CLIP` is all an application needs: tensors, weight files and layer-level errors come along.
@_exported import CLIPLayers
@_exported import CLIPTensor
@_exported import CLIPWeights
