extension CLIPConfiguration: CustomStringConvertible {
    public var description: String {
        let v: String
        switch vision {
        case .transformer(let c):
            // The text is part of the packed-weight cache's key: unchanged for the towers it described before.
            let pooling = switch c.pooling {
            case .classToken: ""
            case .average, .normalizedAverage: ", average pooling"
            case .attentionalPooler: ", attentional pooler"
            case .attention: ", attention pooling"
            }
            v = "ViT width \(c.width), \(c.layers) layers, \(c.heads) heads, patch \(c.patchSize), resolution \(c.patchSize * c.grid)" + pooling
                + (c.variableGrid ? ", NaFlex positions \(c.grid)×\(c.grid) resized per image" : "")
        case .resnet(let c):
            v = "ResNet stages \(c.layers), width \(c.width), \(c.heads) pool heads, resolution \(c.outputGrid * 32)"
        case .convNeXt(let c):
            v = "ConvNeXt stages \(c.depths), widths \(c.widths), resolution \(c.resolution)"
        case .eva(let c):
            v = "EVA width \(c.width), \(c.layers) layers, \(c.heads) heads, patch \(c.patchSize), resolution \(c.resolution)"
        case .fastViT(let c):
            v = "FastViT stages \(c.depths), widths \(c.widths), resolution \(c.resolution)"
        case .viTamin(let c):
            v = "ViTamin stages \(c.stageDepths), widths \(c.stageWidths), width \(c.width), \(c.layers) layers, \(c.heads) heads, resolution \(c.resolution)"
        }
        let t = "text width \(text.width), \(text.layers) layers, \(text.heads) heads, context \(text.contextLength), vocabulary \(text.vocabSize)"
        return "embed \(embedDim); \(v); \(t)" + (objective == .sigmoid ? "; sigmoid (SigLIP)" : "")
    }
}
