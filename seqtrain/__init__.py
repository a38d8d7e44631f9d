"""seqtrain: train recurrent networks (SimpleRNN, LSTM, GRU) from YAML experiment files."""

__version__ = "0.1.0"
