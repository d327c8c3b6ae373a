"""Not a test: the real image-reward 1.5 model code against the tests' reference rebuild and the plugin.

    pip download image-reward==1.5 --no-deps -d /tmp/irdl && unzip /tmp/irdl/*.whl -d /tmp/irsrc
    python plugins/draftsdk-imagereward/tests/check_against_upstream.py /tmp/irsrc

The package does not import under transformers 5 / timm 1.0 without fairscale, so this script adds
import shims (functions moved to transformers.pytorch_utils, a no-op checkpoint_wrapper, a stub
``clip`` module, the removed PreTrainedModel.get_head_mask / invert_attention_mask as in
transformers 4) and imports the package's vit.py, med.py and MLP untouched. Measured on the tiny model
of conftest.py: upstream vs rebuild 0.0 (bitwise), upstream vs plugin 6.2e-6.
"""


def main() -> None:
    import sys, types, json, os
    from pathlib import Path
    sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else "/tmp/irsrc")
    sys.path.insert(0, str(Path(__file__).parent))
    import torch
    import transformers.modeling_utils as mu, transformers.pytorch_utils as pu
    mu.apply_chunking_to_forward = pu.apply_chunking_to_forward
    mu.prune_linear_layer = pu.prune_linear_layer
    mu.find_pruneable_heads_and_indices = lambda *a: None
    fs = types.ModuleType("fairscale"); fsn = types.ModuleType("fairscale.nn"); fsc = types.ModuleType("fairscale.nn.checkpoint"); fsca = types.ModuleType("fairscale.nn.checkpoint.checkpoint_activations")
    fsca.checkpoint_wrapper = lambda m: m
    for n, m in [("fairscale", fs), ("fairscale.nn", fsn), ("fairscale.nn.checkpoint", fsc), ("fairscale.nn.checkpoint.checkpoint_activations", fsca)]:
        sys.modules[n] = m
    import timm.models
    sys.modules["clip"] = types.ModuleType("clip")
    th = types.ModuleType("timm.models.hub"); th.download_cached_file = None; sys.modules["timm.models.hub"] = th
    from transformers import PreTrainedModel
    def get_head_mask(self, head_mask, n): return [None] * n
    def invert_attention_mask(self, m):
        e = m[:, None, None, :].to(self.dtype); return (1.0 - e) * torch.finfo(self.dtype).min
    PreTrainedModel.get_head_mask = get_head_mask
    PreTrainedModel.init_weights = lambda self: None  # weights come from the state dict
    PreTrainedModel.invert_attention_mask = invert_attention_mask
    for pkg, path in [("ImageReward", f"{sys.path[1]}/ImageReward"), ("ImageReward.models", f"{sys.path[1]}/ImageReward/models")]:
        m = types.ModuleType(pkg); m.__path__ = [path]; sys.modules[pkg] = m
    from ImageReward.models.BLIP import vit as uvit, med as umed
    import tempfile
    import conftest, imagereward_reference as ref
    folder = Path(tempfile.mkdtemp()); t = conftest.build_tiny_imagereward(folder)
    cfg = json.loads(Path(t["med_config"]).read_text())
    # upstream modules
    uv = uvit.VisionTransformer(img_size=224, patch_size=16, embed_dim=128, depth=2, num_heads=2).eval()
    bc = umed.BertConfig.from_json_file(str(t["med_config"])); bc.encoder_width = 128
    ut = umed.BertModel(config=bc, add_pooling_layer=False).eval()
    state = torch.load(t["checkpoint"], weights_only=True)
    print(uv.load_state_dict({k[len("blip.visual_encoder."):]: v for k, v in state.items() if k.startswith("blip.visual_encoder.")}, strict=True))
    print(ut.load_state_dict({k[len("blip.text_encoder."):]: v for k, v in state.items() if k.startswith("blip.text_encoder.")}, strict=False))
    from ImageReward.ImageReward import MLP
    um = MLP(64).eval(); um.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("mlp.")})
    from transformers import BertTokenizer
    tok = BertTokenizer.from_pretrained(str(t["tokenizer"])); tok.add_special_tokens({"bos_token": "[DEC]"}); tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    import draftsdk
    reward = draftsdk.get_reward("imagereward", checkpoint=str(t["checkpoint"]), med_config=str(t["med_config"]), tokenizer=str(t["tokenizer"]))
    from draftsdk_imagereward._model import preprocess
    torch.manual_seed(1)
    imgs = torch.nn.functional.interpolate(torch.rand(3, 3, 8, 8), size=(256, 320), mode="bicubic").clamp(0, 1)
    prompts = ["a photo of a fox", "a red bicycle leaning on a brick wall, city at night with clouds and birds", "cat"]
    pix = preprocess(imgs)
    with torch.no_grad():
        ti = tok(prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
        emb = uv(pix)
        out = ut(ti.input_ids, attention_mask=ti.attention_mask, encoder_hidden_states=emb, encoder_attention_mask=torch.ones(emb.shape[:-1], dtype=torch.long), return_dict=True)
        up = ((um(out.last_hidden_state[:, 0, :].float()) - 0.16717362830052426) / 1.0333394966054072).squeeze(-1)
        rb = t["model"].score_pixels(ti.input_ids, ti.attention_mask, pix).squeeze(-1)
        pl = reward.model.score_pixels(pix, ti.input_ids.clone(), ti.attention_mask)
    print("upstream", up.tolist()); print("rebuild ", rb.tolist()); print("plugin  ", pl.tolist())
    print("max |upstream-rebuild|", (up - rb).abs().max().item(), " max |upstream-plugin|", (up - pl).abs().max().item())


if __name__ == "__main__":
    main()
