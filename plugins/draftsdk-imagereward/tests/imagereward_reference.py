"""A faithful rebuild of THUDM's ImageReward v1.0 scoring path, for the parity tests.

The ``image-reward`` package (1.5, the newest on PyPI) cannot be imported next to transformers 5:
its ``med.py`` imports ``apply_chunking_to_forward`` and ``find_pruneable_heads_and_indices`` from
``transformers.modeling_utils`` (gone), its BertModel calls ``PreTrainedModel.get_head_mask`` and
``invert_attention_mask`` (gone), and ``vit.py`` needs ``fairscale`` and timm 0.6's module layout.
This file re-types, statement by statement, the parts of its code that ``ImageReward.score`` runs
(``ImageReward/ImageReward.py``, ``models/BLIP/vit.py``, ``models/BLIP/med.py`` of image-reward 1.5 /
THUDM/ImageReward c1392c6): the same module tree and parameter names (so one state dict fits both),
the same operations in the same order (explicit ``q @ k^T * scale`` and ``nn.Softmax``, the -10000
padding mask of ``get_extended_attention_mask``, transformers 4's ``invert_attention_mask`` for the
image mask, ``apply_chunking_to_forward`` with chunk size 0 = a plain call), and the PIL/torchvision
pre-processing ``_transform(224)``. Dropout and DropPath are identity in eval mode and left out.
The plugin's implementation is independent of it (fused attention, no masks for the image tokens,
torch-ops pre-processing, meta-device loading).
"""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed(nn.Module):  # timm 0.6.13 PatchEmbed(img_size, patch_size, 3, embed_dim), flatten=True, norm=Identity
    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.Identity()

    def forward(self, x):
        x = self.proj(x)
        x = x.flatten(2).transpose(1, 2)  # BCHW -> BNC
        return self.norm(x)


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class VisionTransformer(nn.Module):
    def __init__(self, img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, qkv_bias=True):
        super().__init__()
        norm_layer = lambda d: nn.LayerNorm(d, eps=1e-6)  # noqa: E731 - partial(nn.LayerNorm, eps=1e-6)
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.blocks = nn.ModuleList(
            [Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, norm_layer=norm_layer) for _ in range(depth)]
        )
        self.norm = norm_layer(embed_dim)

    def forward(self, x):
        B = x.shape[0]
        x = self.patch_embed(x)
        cls_tokens = self.cls_token.expand(B, -1, -1)
        x = torch.cat((cls_tokens, x), dim=1)
        x = x + self.pos_embed[:, : x.size(1), :]
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


# -- med.py -----------------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config["vocab_size"], config["hidden_size"], padding_idx=config["pad_token_id"])
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], config["hidden_size"])
        self.LayerNorm = nn.LayerNorm(config["hidden_size"], eps=config["layer_norm_eps"])
        self.register_buffer("position_ids", torch.arange(config["max_position_embeddings"]).expand((1, -1)))

    def forward(self, input_ids):
        seq_length = input_ids.size()[1]
        position_ids = self.position_ids[:, 0:seq_length]
        inputs_embeds = self.word_embeddings(input_ids)
        embeddings = inputs_embeds
        position_embeddings = self.position_embeddings(position_ids)
        embeddings += position_embeddings
        return self.LayerNorm(embeddings)


class BertSelfAttention(nn.Module):
    def __init__(self, config, is_cross_attention):
        super().__init__()
        self.num_attention_heads = config["num_attention_heads"]
        self.attention_head_size = int(config["hidden_size"] / config["num_attention_heads"])
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = nn.Linear(config["hidden_size"], self.all_head_size)
        kv_width = config["encoder_width"] if is_cross_attention else config["hidden_size"]
        self.key = nn.Linear(kv_width, self.all_head_size)
        self.value = nn.Linear(kv_width, self.all_head_size)

    def transpose_for_scores(self, x):
        new_x_shape = x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)
        return x.view(*new_x_shape).permute(0, 2, 1, 3)

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None):
        import math

        mixed_query_layer = self.query(hidden_states)
        is_cross_attention = encoder_hidden_states is not None
        if is_cross_attention:
            key_layer = self.transpose_for_scores(self.key(encoder_hidden_states))
            value_layer = self.transpose_for_scores(self.value(encoder_hidden_states))
            attention_mask = encoder_attention_mask
        else:
            key_layer = self.transpose_for_scores(self.key(hidden_states))
            value_layer = self.transpose_for_scores(self.value(hidden_states))
        query_layer = self.transpose_for_scores(mixed_query_layer)
        attention_scores = torch.matmul(query_layer, key_layer.transpose(-1, -2))
        attention_scores = attention_scores / math.sqrt(self.attention_head_size)
        if attention_mask is not None:
            attention_scores = attention_scores + attention_mask
        attention_probs = nn.Softmax(dim=-1)(attention_scores)
        context_layer = torch.matmul(attention_probs, value_layer)
        context_layer = context_layer.permute(0, 2, 1, 3).contiguous()
        new_context_layer_shape = context_layer.size()[:-2] + (self.all_head_size,)
        return context_layer.view(*new_context_layer_shape)


class BertSelfOutput(nn.Module):
    def __init__(self, config, in_size=None):
        super().__init__()
        self.dense = nn.Linear(in_size or config["hidden_size"], config["hidden_size"])
        self.LayerNorm = nn.LayerNorm(config["hidden_size"], eps=config["layer_norm_eps"])

    def forward(self, hidden_states, input_tensor):
        hidden_states = self.dense(hidden_states)
        return self.LayerNorm(hidden_states + input_tensor)


class BertAttention(nn.Module):
    def __init__(self, config, is_cross_attention=False):
        super().__init__()
        self.self = BertSelfAttention(config, is_cross_attention)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None):
        self_outputs = self.self(hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask)
        return self.output(self_outputs, hidden_states)


class BertIntermediate(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config["hidden_size"], config["intermediate_size"])

    def forward(self, hidden_states):
        return nn.functional.gelu(self.dense(hidden_states))  # ACT2FN["gelu"] = GELUActivation (exact erf)


class BertLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.attention = BertAttention(config)
        self.crossattention = BertAttention(config, is_cross_attention=True)
        self.intermediate = BertIntermediate(config)
        self.output = BertSelfOutput(config, in_size=config["intermediate_size"])  # BertOutput: same layers

    def forward(self, hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask):
        attention_output = self.attention(hidden_states, attention_mask)
        # mode == 'multimodal'
        attention_output = self.crossattention(attention_output, attention_mask, encoder_hidden_states, encoder_attention_mask)
        intermediate_output = self.intermediate(attention_output)
        return self.output(intermediate_output, attention_output)


class BertEncoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config["num_hidden_layers"])])

    def forward(self, hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask):
        for layer_module in self.layer:
            hidden_states = layer_module(hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask)
        return hidden_states


class BertModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)

    def forward(self, input_ids, attention_mask, encoder_hidden_states, encoder_attention_mask):
        dtype = next(self.parameters()).dtype
        # get_extended_attention_mask (is_decoder=False)
        extended_attention_mask = attention_mask[:, None, None, :]
        extended_attention_mask = extended_attention_mask.to(dtype=dtype)
        extended_attention_mask = (1.0 - extended_attention_mask) * -10000.0
        # transformers 4.x ModuleUtilsMixin.invert_attention_mask
        encoder_extended_attention_mask = encoder_attention_mask[:, None, None, :].to(dtype=dtype)
        encoder_extended_attention_mask = (1.0 - encoder_extended_attention_mask) * torch.finfo(dtype).min
        embedding_output = self.embeddings(input_ids=input_ids)
        return self.encoder(embedding_output, extended_attention_mask, encoder_hidden_states, encoder_extended_attention_mask)


class BLIP(nn.Module):
    def __init__(self, med_config, vision_width=1024, vision_depth=24, vision_heads=16, patch_size=16):
        super().__init__()
        self.visual_encoder = VisionTransformer(
            img_size=224, patch_size=patch_size, embed_dim=vision_width, depth=vision_depth, num_heads=vision_heads
        )
        encoder_config = dict(med_config)
        encoder_config["encoder_width"] = vision_width
        self.text_encoder = BertModel(encoder_config)
        self.vision_proj = nn.Linear(vision_width, 256)
        self.text_proj = nn.Linear(encoder_config["hidden_size"], 256)


class MLP(nn.Module):
    def __init__(self, input_size):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )

    def forward(self, input):
        return self.layers(input)


class ImageReward(nn.Module):
    def __init__(self, med_config, **vision):
        super().__init__()
        self.blip = BLIP(med_config, **vision)
        self.mlp = MLP(med_config["hidden_size"])
        self.mean = 0.16717362830052426
        self.std = 1.0333394966054072

    def score_pixels(self, input_ids, attention_mask, image):
        """``ImageReward.score`` from the preprocessed image on: (1, 3, 224, 224) -> raw float score tensor (1, 1)."""
        image_embeds = self.blip.visual_encoder(image)
        image_atts = torch.ones(image_embeds.size()[:-1], dtype=torch.long)
        last_hidden_state = self.blip.text_encoder(input_ids, attention_mask, image_embeds, image_atts)
        txt_features = last_hidden_state[:, 0, :].float()
        rewards = self.mlp(txt_features)
        return (rewards - self.mean) / self.std

    def score(self, tokenizer, prompt, pil_image):
        """``ImageReward.score(prompt, image)`` for one PIL image: a Python float."""
        text_input = tokenizer(prompt, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
        image = transform(224)(pil_image).unsqueeze(0)
        return self.score_pixels(text_input.input_ids, text_input.attention_mask, image).detach().cpu().numpy().item()


def transform(n_px):
    """``ImageReward._transform``: torchvision on the PIL image."""
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    return Compose([
        Resize(n_px, interpolation=InterpolationMode.BICUBIC),
        CenterCrop(n_px),
        lambda image: image.convert("RGB"),
        ToTensor(),
        Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    ])
