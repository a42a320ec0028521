import CLIPLayers
import CLIPTensor

extension CLIPModel {
    /// What `backward` needs from `trainingForward`: each tower's activations.
    package struct TrainingTrace: Sendable {
        var image: VisionTransformer.Trace?
        var text: TextTransformer.Trace
    }

    /// The forward pass for training: `images` [N, 3, R, R] and N rows of token ids → unnormalised features
    /// ([N, embed] each) and what `backward` needs. With `lockedImageTower` (LiT) the image tower runs its inference
    /// path and `backward` gives it no gradient. Only ViT image towers train, with fp32 products or bf16 ones (mixed
    /// precision: the weights the model was built from stay fp32); a ResNet or ConvNeXt tower can be trained locked.
    package func trainingForward(images: Tensor, texts: [[Int]], lockedImageTower: Bool = false)
        throws(CLIPError) -> (image: Tensor, text: Tensor, trace: TrainingTrace) {
        guard precision != .int8 else { throw .training("training needs fp32 or bf16 products, this model computes in int8") }
        guard configuration.objective == .softmax, configuration.text.causal, configuration.text.pooling == .endOfText,
              !configuration.text.projectionBias else {
            throw .training(configuration.objective == .sigmoid
                ? "training SigLIP models (sigmoid loss, attention pooling, a non-causal text tower) is not supported yet; only CLIP architectures train"
                : "training this text tower (features read at \(configuration.text.pooling) rather than the end-of-text token, as in CoCa and MetaCLIP 2) is not supported yet; only CLIP architectures train")
        }
        guard images.rank == 4, images.shape[1] == 3, images.shape[0] == texts.count else {
            throw .imageShape(images.shape, expected: "[\(texts.count), 3, \(configuration.imageResolution), \(configuration.imageResolution)] (one image per text)")
        }
        if images.scalars.contains(where: { !$0.isFinite }) { throw .nonFinitePixels }
        if case .notLoaded = self.text { throw .textTowerNotLoaded }
        guard case .transformer(let textTower) = self.text else {
            throw .training("training a Hugging Face text tower is not supported yet; only CLIP's text transformer trains")
        }
        var blocks = textTower.transformer.blocks
        if case .transformer(let vit) = visual, !lockedImageTower { blocks += vit.transformer.blocks }
        guard !blocks.contains(where: \.layerScaled) else {
            throw .training("training blocks with layer scale (open_clip's ls_init_value) is not supported yet")
        }
        let (text, textTrace) = try textTower.forwardTraining(texts)
        if lockedImageTower {
            return (try encodeImage(images), text, TrainingTrace(image: nil, text: textTrace))
        }
        if case .notLoaded = visual { throw .imageTowerNotLoaded }
        guard case .transformer(let vit) = visual else {
            let kind = switch visual {
            case .convNeXt: "ConvNeXt"
            case .eva: "EVA"
            case .fastViT: "FastViT"
            case .viTamin: "ViTamin"
            default: "ResNet"
            }
            throw .training("training the \(kind) image tower is not supported yet; train it locked (LiT) or use a ViT")
        }
        let v = vit.configuration
        guard v.pooling == .classToken, v.preNorm, v.projection, !v.patchBias, !v.projectionBias, v.rotary == nil,
              v.convStem == nil, v.classTokenPosition else {
            throw .training("training this image tower (no class token, ln_pre or projection, a patch or projection bias, a rotary embedding or a convolutional stem) is not supported yet; train it locked (LiT)")
        }
        let (image, imageTrace) = try vit.forwardTraining(images)
        return (image, text, TrainingTrace(image: imageTrace, text: textTrace))
    }

    /// The backward pass of `trainingForward`: `imageGradient` and `textGradient` [N, embed] are the gradients of
    /// the features it returned; `parameters` the values this model was built from (by checkpoint name). Adds the
    /// gradient of every parameter that was used to `gradients`.
    package func backward(_ trace: TrainingTrace, imageGradient: Tensor, textGradient: Tensor,
                         parameters: ParameterValues, into gradients: inout Gradients) throws(TensorError) {
        guard case .transformer(let textTower) = text else {
            throw .shapeMismatch(operation: "backward through a Hugging Face text tower", [], [])
        }
        try textTower.backward(trace.text, featureGradient: textGradient, parameters: parameters, into: &gradients)
        if let imageTrace = trace.image, case .transformer(let vit) = visual {
            try vit.backward(imageTrace, featureGradient: imageGradient, parameters: parameters, into: &gradients)
        }
    }
}
