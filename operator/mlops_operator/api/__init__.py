"""The API of the mlops.io group: typed models of every kind's spec and status, and the CRDs made from them."""
