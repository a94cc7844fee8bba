"""Routers, expert feed-forward layers, auxiliary losses and transformer blocks."""

# Transformer blocks (model zoo)
from tfmoe.layers.attention import T5Attention
from tfmoe.layers.dense_feed_forward import DenseFeedForward
from tfmoe.layers.dispatch import EinsumDispatcher, GatherDispatcher
from tfmoe.layers.experts import ExpertFeedForward, expert_feed_forward
from tfmoe.layers.initializers import ExpertVarianceScaling
from tfmoe.layers.losses import load_balancing_loss, router_z_loss
from tfmoe.layers.moe_feed_forward import (
    MOE_OPTIONS,
    MoeFeedForward,
    SwitchFeedForward,
    Top2FeedForward,
)
from tfmoe.layers.relative_position_bias import RelativePositionBias, relative_position_bucket
from tfmoe.layers.rms_norm import RMSNorm
from tfmoe.layers.router import Router, router_logits
from tfmoe.layers.routing import RoutingInstructions, expert_capacity, route_top_k
from tfmoe.layers.routing_metrics import RoutingMetrics
from tfmoe.layers.transformer_block import TransformerBlock
from tfmoe.layers.transformer_stack import TransformerStack, is_sparse_layer

__all__ = [
    "MOE_OPTIONS",
    "DenseFeedForward",
    "EinsumDispatcher",
    "ExpertFeedForward",
    "ExpertVarianceScaling",
    "GatherDispatcher",
    "MoeFeedForward",
    "RMSNorm",
    "RelativePositionBias",
    "Router",
    "RoutingInstructions",
    "RoutingMetrics",
    "SwitchFeedForward",
    "T5Attention",
    "Top2FeedForward",
    "TransformerBlock",
    "TransformerStack",
    "expert_capacity",
    "expert_feed_forward",
    "is_sparse_layer",
    "load_balancing_loss",
    "relative_position_bucket",
    "route_top_k",
    "router_logits",
    "router_z_loss",
]
