import CLIPFiles

/// How a checkpoint stores its weights.
public enum WeightFormat: String, Sendable {
    case safetensors
    case torchStateDict = "PyTorch state dict (torch.save)"
    case torchScript = "TorchScript archive"
    case huggingFace = "Hugging Face folder (CLIPModel or SiglipModel)"
}

/// Opens a weight file whatever its format, recognised by its first bytes: a zip archive (`torch.save` state dict
/// or TorchScript), or safetensors (an 8-byte header length, then a JSON object). A pre-1.6 pickled `torch.save`
/// and anything else are errors naming the file and what its first bytes are.
public func openWeightFile(path: String) throws(WeightFileError) -> (source: any WeightSource, format: WeightFormat) {
    let file = try RegularFile(opening: path)
    let head = try file.checkedRead(at: 0, count: min(16, file.size))
    if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) {
        let checkpoint = try TorchCheckpoint(file: file)
        return (checkpoint, checkpoint.kind == .torchScript ? .torchScript : .torchStateDict)
    }
    if head.count >= 9 && head[8] == UInt8(ascii: "{") {
        return (try SafeTensorsFile(file: file), .safetensors)
    }
    if head.first == 0x80 {
        throw WeightFileError(file: path, .invalidEntry(tensor: "checkpoint", message: "legacy (pre-1.6) torch.save format; re-save it with a current PyTorch"))
    }
    let hex = head.map { b in String(b, radix: 16).count == 1 ? "0" + String(b, radix: 16) : String(b, radix: 16) }
    throw WeightFileError(file: path, .invalidEntry(tensor: "checkpoint", message: "not a safetensors file, PyTorch zip checkpoint or Hugging Face folder (first bytes: \(hex.joined(separator: " ")))"))
}
