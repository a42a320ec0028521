extension CLIPConfiguration {
    /// The nine architectures OpenAI released, by the names `clip.available_models()` uses.
    public static let openAIModelNames = ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64",
                                          "ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px"]

    /// The architecture of one of OpenAI's released models, or nil for an unknown name.
    public static func openAI(_ name: String) -> CLIPConfiguration? {
        func text(_ width: Int) -> Text {
            Text(contextLength: 77, vocabSize: 49408, width: width, heads: width / 64, layers: 12)
        }
        func resnet(_ embed: Int, _ resolution: Int, _ layers: [Int], _ width: Int, _ textWidth: Int) -> CLIPConfiguration {
            CLIPConfiguration(embedDim: embed,
                              vision: .resnet(.init(layers: layers, width: width, heads: width * 32 / 64,
                                                    outputGrid: resolution / 32)),
                              text: text(textWidth))
        }
        func vit(_ embed: Int, _ resolution: Int, _ layers: Int, _ width: Int, _ patch: Int, _ textWidth: Int) -> CLIPConfiguration {
            CLIPConfiguration(embedDim: embed,
                              vision: .transformer(.init(width: width, layers: layers, heads: width / 64,
                                                         patchSize: patch, grid: resolution / patch)),
                              text: text(textWidth))
        }
        switch name {
        case "RN50": return resnet(1024, 224, [3, 4, 6, 3], 64, 512)
        case "RN101": return resnet(512, 224, [3, 4, 23, 3], 64, 512)
        case "RN50x4": return resnet(640, 288, [4, 6, 10, 6], 80, 640)
        case "RN50x16": return resnet(768, 384, [6, 8, 18, 8], 96, 768)
        case "RN50x64": return resnet(1024, 448, [3, 15, 36, 10], 128, 1024)
        case "ViT-B/32": return vit(512, 224, 12, 768, 32, 512)
        case "ViT-B/16": return vit(512, 224, 12, 768, 16, 512)
        case "ViT-L/14": return vit(768, 224, 24, 1024, 14, 768)
        case "ViT-L/14@336px": return vit(768, 336, 24, 1024, 14, 768)
        default: return nil
        }
    }
}
