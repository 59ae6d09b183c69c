"""APIs ps01_sequences does not allow: its functions build these."""

FORBIDDEN = {
    "torch.nn.RNNCell": "build the RNN step yourself",
    "torch.nn.LSTMCell": "build the LSTM step yourself",
    "torch.nn.RNN": "build the RNN yourself",
    "torch.nn.LSTM": "build the LSTM yourself",
    "torch.rnn_tanh_cell": "build the RNN step yourself",
    "torch.lstm_cell": "build the LSTM step yourself",
    "torch.Tensor.backward": "bptt_grad applies the chain rule by hand",
    "torch.autograd": "bptt_grad applies the chain rule by hand",
    "mastering_transformers.RNNCell": "it is the answer",
    "mastering_transformers.LSTMCell": "it is the answer",
    "mastering_transformers.AdditiveAttention": "it is the answer",
}
